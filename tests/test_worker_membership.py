"""Static membership: a worker restarted with its WORKER_INSTANCE_ID takes its partitions back,
and the group does not rebalance, so the other workers never stop to revoke and drain."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

from connector.config import WorkerSettings, load
from connector.worker import WorkerConfig, consumer_for
from tests.kafka_support import Topics, fresh_topics

PARTITIONS = 4
# A member learns of a rebalance from its next heartbeat (aiokafka's heartbeat_interval_ms, 3 s):
# waiting longer than that lets a rebalance show, if there is one.
NOTICE_S = 4.0


@dataclass
class Member(ConsumerRebalanceListener):  # type: ignore[misc]
    """One worker's consumer, polled in the background, with every rebalance it saw."""

    consumer: AIOKafkaConsumer
    events: list[tuple[str, frozenset[int]]] = field(default_factory=list)

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.events.append(("revoked", frozenset(tp.partition for tp in revoked)))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.events.append(("assigned", frozenset(tp.partition for tp in assigned)))

    def partitions(self) -> frozenset[int]:
        return frozenset(tp.partition for tp in self.consumer.assignment())


@contextlib.asynccontextmanager
async def member(topics: Topics, group: str, instance_id: str | None) -> AsyncIterator[Member]:
    """Start the worker's consumer as `serve` builds it, subscribed to the raw topic."""
    settings = load(WorkerSettings, {"consumer_group": group, "worker_instance_id": instance_id})
    consumer = consumer_for(WorkerConfig(topics.kafka, topics.topics, settings))
    joined = Member(consumer)
    await consumer.start()
    consumer.subscribe([topics.raw], listener=joined)
    polling = asyncio.create_task(_poll(consumer))
    try:
        yield joined
    finally:
        polling.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await polling
        await consumer.stop()


async def _poll(consumer: AIOKafkaConsumer) -> None:
    while True:
        await consumer.getmany(timeout_ms=100)


async def split_between(*members: Member) -> None:
    """Wait until the members hold every partition between them, each some."""
    async with asyncio.timeout(60):
        while not (
            all(m.partitions() for m in members)
            and frozenset().union(*(m.partitions() for m in members)) == set(range(PARTITIONS))
        ):
            await asyncio.sleep(0.1)


async def restart_the_first(topics: Topics, static: bool) -> tuple[list[object], bool]:
    """Run two members, stop the first and start it again; return the rebalances the second
    saw meanwhile, and whether the first got back exactly what it had, and the second kept."""
    group = f"test-static-{uuid.uuid4().hex[:8]}"
    ids = ("worker-a", "worker-b") if static else (None, None)
    async with member(topics, group, ids[1]) as second:
        async with member(topics, group, ids[0]) as first:
            await split_between(first, second)
            before, seen = first.partitions(), len(second.events)
        await asyncio.sleep(NOTICE_S)
        async with member(topics, group, ids[0]) as restarted:
            async with asyncio.timeout(60):
                while not restarted.partitions():
                    await asyncio.sleep(0.1)
            await asyncio.sleep(NOTICE_S)
            same = restarted.partitions() == before and second.partitions().isdisjoint(before)
            return list(second.events[seen:]), same


async def test_a_restarted_static_member_gets_its_partitions_back_without_a_rebalance(
    bootstrap_servers: str,
) -> None:
    topics = await fresh_topics(bootstrap_servers, partitions=PARTITIONS)
    rebalances, same = await restart_the_first(topics, static=True)
    assert rebalances == [], "the other member was never asked to revoke or take partitions"
    assert same, "the restarted member holds what it held, the other member what it held"


async def test_without_an_instance_id_the_same_restart_rebalances_the_group(
    bootstrap_servers: str,
) -> None:
    topics = await fresh_topics(bootstrap_servers, partitions=PARTITIONS)
    rebalances, _ = await restart_the_first(topics, static=False)
    # The first member's leaving gives the other every partition; its return takes some back.
    assert rebalances[:2] == [("revoked", rebalances[0][1]), ("assigned", frozenset(range(4)))]
    assert len(rebalances) >= 4
