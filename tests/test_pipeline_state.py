"""The delivery state in a pipeline: restored before a partition's records go, screening,
confirming before finishing, forgotten on revoke.

No broker or sandbox: the consumer hands out one prepared batch, Braze accepts everything, and
the state topic is a dictionary (restoring reads it, writing adds to it); the store and the
decisions are the real ones. test_worker_state.py runs the same against the broker and sandbox.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

import orjson
from aiokafka import ConsumerRecord, TopicPartition

from connector.batching import Item
from connector.braze import Action, AdaptiveLimiter, Answer, RateBudget
from connector.config import WorkerSettings, load
from connector.delivery_state import DeliveryState, Records
from connector.mapping import load_mapping
from connector.metrics import WorkerMetrics
from connector.pipeline import LIVE, Pipeline
from connector.pipeline_state import Origin, StateParts
from connector.producer import partition_of
from connector.state_store import StateStore
from connector.state_topic import Restored
from tests.worker_support import Letters, lead, user_key_of

TOPIC = "raw"
PARTITIONS = 3


class Braze:
    """Accepts every request; keeps each body."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []

    async def track(self, encoded: bytes) -> Answer:
        self.bodies.append(orjson.loads(encoded))
        return Answer(201, Action.DONE, "success")

    @property
    def events(self) -> list[str]:
        return [e["properties"]["lead_id"] for b in self.bodies for e in b.get("events", [])]


class Consumer:
    """Owns every partition of the topic; hands out the batches given, one a fetch."""

    def __init__(self) -> None:
        self.batches: list[dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]] = []

    def assignment(self) -> set[TopicPartition]:
        return {TopicPartition(TOPIC, p) for p in range(PARTITIONS)}

    def partitions_for_topic(self, topic: str) -> set[int]:
        return set(range(PARTITIONS))

    def highwater(self, tp: TopicPartition) -> int | None:
        return None

    def pause(self, *partitions: TopicPartition) -> None:
        pass

    def resume(self, *partitions: TopicPartition) -> None:
        pass

    async def getmany(
        self, *, timeout_ms: int, max_records: int
    ) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]:
        if self.batches:
            return self.batches.pop(0)
        await asyncio.sleep(timeout_ms / 1000)
        return {}

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        pass


class StateTopic:
    """A state topic in memory: restoring waits for `open` and reads it; writes add to it."""

    def __init__(self) -> None:
        self.records: dict[int, list[tuple[bytes, bytes]]] = {}
        self.open = asyncio.Event()
        self.open.set()
        self.restores: list[list[int]] = []

    async def restore(self, partitions: Iterable[int], store: StateStore) -> dict[int, Restored]:
        chosen = list(partitions)
        self.restores.append(chosen)
        await self.open.wait()
        found = {}
        for partition in chosen:
            rows = self.records.get(partition, [])
            store.load(partition, rows)
            found[partition] = Restored(len(rows), store.count(partition), 0.0)
        return found

    async def write(self, records: Records) -> None:
        for partition, rows in records.items():
            self.records.setdefault(partition, []).extend(rows)


def record(document: dict[str, Any], offset: int) -> ConsumerRecord[bytes, bytes]:
    """The lead as the receiver writes it, read at `offset` of its user's partition."""
    key = user_key_of(document)
    partition = partition_of(key, PARTITIONS)
    headers = (("content-type", b"application/json"), ("received-at", b"1"), ("source", b"x"))
    value = orjson.dumps(document)
    return ConsumerRecord(TOPIC, partition, offset, 0, 0, key, value, None, 0, 0, headers)


def batch(*records: ConsumerRecord[bytes, bytes]) -> dict[TopicPartition, list[Any]]:
    found: dict[TopicPartition, list[Any]] = {}
    for one in records:
        found.setdefault(TopicPartition(TOPIC, one.partition), []).append(one)
    return found


@asynccontextmanager
async def pipeline(topic: StateTopic) -> AsyncIterator[tuple[Pipeline, Braze, Consumer]]:
    """A pipeline whose events are keyed by lead id, with the state in `topic`."""
    braze, consumer = Braze(), Consumer()
    settings = load(WorkerSettings, {"worker_batch_window_ms": 0, "worker_drain_timeout_s": 5})
    with StateStore.open(None, 8) as store:
        decisions = DeliveryState(store, window_days=30)
        parts = StateParts(decisions, store, topic, topic.restore)
        line = Pipeline(
            consumer,  # type: ignore[arg-type]
            braze,  # type: ignore[arg-type]
            AdaptiveLimiter(RateBudget(1_000_000, 1.0)),
            Letters(),  # type: ignore[arg-type]
            load_mapping(),
            settings,
            WorkerMetrics(),
            TOPIC,
            LIVE,
            parts,
        )
        dispatching = asyncio.create_task(line.dispatcher.forever())
        try:
            yield line, braze, consumer
        finally:
            dispatching.cancel()
            await line.stop()
            await line.close()


async def delivered(line: Pipeline) -> None:
    """Fetch what the consumer has and wait until all of it is finished."""
    await line.intake.fetch_once()
    async with asyncio.timeout(10):
        while not line.idle:
            line.dispatcher.dispatch(flush=True)
            await asyncio.sleep(0.01)


async def test_no_record_of_a_partition_is_sent_before_its_state_is_restored() -> None:
    topic = StateTopic()
    first = lead(1, 0)
    async with pipeline(topic) as (line, braze, consumer):  # Braze accepts the lead once
        consumer.batches.append(batch(record(first, 0)))
        await delivered(line)
    assert braze.events == ["lead-1-0"]
    assert topic.records, "what Braze accepted is in the state topic"

    topic.open.clear()  # the next worker's restore waits
    async with pipeline(topic) as (line, braze, consumer):
        again = record(first, 7)  # the same lead, posted again
        line.assigned(range(PARTITIONS))
        consumer.batches.append(batch(again))
        fetching = asyncio.create_task(line.intake.fetch_once())
        for _ in range(20):
            await asyncio.sleep(0.01)
            line.dispatcher.dispatch(flush=True)
        assert not fetching.done() and len(line.queue) == 0 and braze.bodies == []
        topic.open.set()
        await fetching
        await delivered(line)
        assert braze.bodies == []  # restored: Braze has it all
        assert (line.counts.skipped, line.counts.events_skipped) == (1, 1)
        assert line.trackers.of(again.partition).safe_offset() == 8
    assert topic.restores[-1] == list(range(PARTITIONS))


async def test_only_what_changed_is_sent_and_confirmed() -> None:
    topic = StateTopic()
    async with pipeline(topic) as (line, braze, consumer):
        consumer.batches.append(batch(record(lead(1, 0), 0)))
        await delivered(line)
        changed = {**lead(1, 1), "created_at": lead(1, 0)["created_at"]}
        changed["results"] = [*lead(1, 0)["results"][:1], {"title": "Outcome", "value": "new"}]
        consumer.batches.append(batch(record(changed, 1)))
        await delivered(line)
    first, second = braze.bodies
    assert len(first["attributes"][0]) == 5  # the identity and four attributes
    assert second["attributes"] == [{"external_id": "user-1", "outgrow_custom_segment": "new"}]
    assert braze.events == ["lead-1-0", "lead-1-1"]  # a new lead: a new event
    assert line.counts.attributes_skipped == 3
    # The state topic holds the latest state of the user, written after each answer.
    [rows] = topic.records.values()
    assert len(rows) == 2 and rows[0][0] == rows[1][0]


async def test_a_revoked_partition_forgets_its_state_and_restores_it_when_assigned_again() -> None:
    topic = StateTopic()
    document = lead(1, 0)
    async with pipeline(topic) as (line, braze, consumer):
        one = record(document, 0)
        consumer.batches.append(batch(one))
        await delivered(line)
        await line.revoked({one.partition})
        assert not line.state.store.holds(one.partition)  # type: ignore[union-attr]
        line.assigned([one.partition])
        consumer.batches.append(batch(record(document, 1)))
        await delivered(line)
    assert braze.events == ["lead-1-0"]
    assert topic.restores[-1] == [one.partition]


def _dead_letter(headers: list[tuple[str, bytes | None]]) -> Item:
    record = ConsumerRecord("dlq", 0, 7, 0, 0, None, b"{}", None, 0, 0, headers)
    return Item(0, 7, None, None, record, None)  # type: ignore[arg-type]


def test_a_dead_letter_is_placed_where_its_record_was_first_read() -> None:
    origin = Origin("raw", 6)
    good = [
        ("dlq-original-topic", b"raw"),
        ("dlq-original-partition", b"4"),
        ("dlq-original-offset", b"1207"),
    ]
    assert origin.place(_dead_letter(good)) == (4, 1207)
    assert origin.place(_dead_letter([good[1], good[0], good[2], good[0]])) == (4, 1207)
    for bad in (
        [("dlq-original-topic", b"other"), *good[1:]],
        good[:2],
        [*good[:2], ("dlq-original-offset", "١٢".encode())],  # digits, not ASCII ones
        [*good[:2], ("dlq-original-offset", b"9" * 30)],
        [*good[:2], ("dlq-original-offset", None)],
    ):
        assert origin.place(_dead_letter(bad)) is None, bad
