"""The state topic against the real broker: restoring partitions into the store, and writing."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from connector.config import KafkaSettings, load
from connector.errors import KafkaUnavailable
from connector.state_store import StateStore
from connector.state_topic import Restored, StateWriter, restore
from tests.kafka_support import read_all


def kafka_settings(bootstrap: str, **more: Any) -> KafkaSettings:
    return load(KafkaSettings, {"kafka_bootstrap_servers": bootstrap, **more})


async def state_topic(bootstrap: str, partitions: int = 3, name: str | None = None) -> str:
    """Create a fresh compacted topic, as `topics ensure` creates the state topic."""
    name = name or f"test.state.{uuid.uuid4().hex[:10]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        topic = NewTopic(name, partitions, 1, topic_configs={"cleanup.policy": "compact"})
        await admin.create_topics([topic])
    finally:
        await admin.close()
    return name


def key(n: int) -> bytes:
    """A state key whose row id (its first 8 bytes) is n."""
    return n.to_bytes(8, "big") + b"\x5a" * 8


async def produce(bootstrap: str, topic: str, rows: list[tuple[int, bytes | None, bytes | None]]):
    """Write (partition, key, value) records as they are, tombstones and foreign keys too."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for partition, k, value in rows:
            await producer.send_and_wait(topic, value=value, key=k, partition=partition)
    finally:
        await producer.stop()


@pytest.fixture
def store() -> Iterator[StateStore]:
    with StateStore.open(None, 4) as store:
        yield store


async def test_written_state_is_restored_into_its_own_partitions(
    bootstrap_servers: str, store: StateStore
) -> None:
    topic = await state_topic(bootstrap_servers)
    kafka = kafka_settings(bootstrap_servers)
    async with StateWriter(kafka, topic) as writer:
        await writer.write({0: [(key(1), b"a"), (key(2), b"b")], 2: [(key(3), b"c")]})
        await writer.write({0: [(key(1), b"a2")]})
    records = await read_all(bootstrap_servers, topic)
    assert sorted((r.partition, r.key, r.value) for r in records) == [
        (0, key(1), b"a"),
        (0, key(1), b"a2"),
        (0, key(2), b"b"),
        (2, key(3), b"c"),
    ]

    restored = await restore(kafka, topic, [0, 1, 2], store)
    assert {p: (r.records, r.users) for p, r in restored.items()} == {
        0: (3, 2),
        1: (0, 0),
        2: (1, 1),
    }
    assert all(isinstance(r, Restored) and r.seconds > 0 for r in restored.values())
    assert [store.get(0, key(1)), store.get(0, key(2)), store.get(2, key(3))] == [b"a2", b"b", b"c"]
    assert store.get(1, key(3)) is None
    assert store.partitions == [0, 1, 2]


async def test_tombstones_delete_and_records_not_keyed_by_state_key_are_ignored(
    bootstrap_servers: str, store: StateStore
) -> None:
    topic = await state_topic(bootstrap_servers, partitions=2)
    await produce(
        bootstrap_servers,
        topic,
        [
            (1, key(1), b"kept"),
            (1, key(2), b"gone"),
            (1, key(2), None),
            (1, b"short", b"not ours"),
        ],
    )
    restored = await restore(kafka_settings(bootstrap_servers), topic, [1], store)
    assert (restored[1].records, restored[1].users) == (3, 1)
    assert store.get(1, key(1)) == b"kept"
    assert store.get(1, key(2)) is None


async def test_a_restore_replaces_what_the_store_held_and_leaves_other_partitions(
    bootstrap_servers: str, store: StateStore
) -> None:
    topic = await state_topic(bootstrap_servers, partitions=2)
    await produce(bootstrap_servers, topic, [(0, key(1), b"from the topic")])
    store.load(0, [(key(9), b"stale")])
    store.load(1, [(key(8), b"other")])
    await restore(kafka_settings(bootstrap_servers), topic, [0], store)
    assert [store.get(0, key(1)), store.get(0, key(9))] == [b"from the topic", None]
    assert store.get(1, key(8)) == b"other"


async def test_restoring_no_partitions_reads_nothing(
    bootstrap_servers: str, store: StateStore
) -> None:
    assert await restore(kafka_settings("127.0.0.1:1"), "none", [], store) == {}


async def test_restoring_from_an_unreachable_kafka_says_so(store: StateStore) -> None:
    kafka = kafka_settings("127.0.0.1:1", kafka_request_timeout_ms=1_000)
    with pytest.raises(KafkaUnavailable):
        await restore(kafka, "outgrow.braze.state", [0], store)
    assert store.holds(0)
    assert store.count(0) == 0


async def test_a_write_retries_until_the_topic_exists_sending_the_values_the_store_holds_then(
    bootstrap_servers: str, caplog: pytest.LogCaptureFixture
) -> None:
    topic = f"test.state.{uuid.uuid4().hex[:10]}"
    kafka = kafka_settings(bootstrap_servers, kafka_request_timeout_ms=1_000)
    with StateStore.open(None, 4) as store:
        store.load(1, [(key(5), b"as confirmed")])
        async with StateWriter(kafka, topic, store=store) as writer:
            writing = asyncio.create_task(writer.write({1: [(key(5), b"as confirmed")]}))
            async with asyncio.timeout(30):
                while "state topic unavailable, retrying" not in caplog.text:
                    await asyncio.sleep(0.1)
            store.put(1, [(key(5), b"confirmed later")])  # a later answer for the same user
            await state_topic(bootstrap_servers, partitions=2, name=topic)
            await asyncio.wait_for(writing, 60)
    records = await read_all(bootstrap_servers, topic)
    assert [(r.partition, r.key, r.value) for r in records] == [(1, key(5), b"confirmed later")]


async def test_a_write_waits_through_a_broker_restart_and_returns_once_acknowledged(
    restartable_broker: Any,
) -> None:
    bootstrap = restartable_broker.bootstrap_servers
    topic = await state_topic(bootstrap, partitions=2)
    kafka = kafka_settings(bootstrap, kafka_request_timeout_ms=3_000)
    async with StateWriter(kafka, topic) as writer:
        await writer.write({0: [(key(4), b"before")]})
        await asyncio.to_thread(restartable_broker.stop)
        writing = asyncio.create_task(writer.write({1: [(key(5), b"during")]}))
        await asyncio.sleep(4)
        assert not writing.done()
        await asyncio.to_thread(restartable_broker.start)
        await asyncio.wait_for(writing, 120)
    records = await read_all(bootstrap, topic)
    assert {(r.partition, r.key, r.value) for r in records} == {
        (0, key(4), b"before"),
        (1, key(5), b"during"),
    }
