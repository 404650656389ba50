"""Helpers for tests that talk to the real broker: fresh topics, reading them back."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from connector.cluster import Cluster, TopicMissing
from connector.config import KafkaSettings, TopicSettings, load
from connector.topics import ensure_topics


@dataclass(frozen=True)
class Topics:
    """Fresh topics (raw, dead letters, delivery state) and the settings that name them."""

    kafka: KafkaSettings
    topics: TopicSettings

    @property
    def raw(self) -> str:
        return self.topics.raw_topic


async def fresh_topics(bootstrap: str, partitions: int = 3) -> Topics:
    """Create a raw, a dead-letter and a state topic with unique names."""
    suffix = uuid.uuid4().hex[:10]
    kafka = load(KafkaSettings, {"kafka_bootstrap_servers": bootstrap})
    topics = load(
        TopicSettings,
        {
            "raw_topic": f"test.raw.{suffix}",
            "dlq_topic": f"test.dlq.{suffix}",
            "state_topic": f"test.state.{suffix}",
            "topic_partitions": partitions,
        },
    )
    await ensure_topics(kafka, topics)
    return Topics(kafka, topics)


async def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    """Return the end offset of every partition of a topic."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in await partitions_of(bootstrap, topic)]
        ends = await consumer.end_offsets(partitions)
        return {tp.partition: offset for tp, offset in ends.items()}
    finally:
        await consumer.stop()


async def partitions_of(bootstrap: str, topic: str) -> list[int]:
    """The partition numbers of a topic, once the cluster reports it (it may lag a creation)."""
    kafka = load(KafkaSettings, {"kafka_bootstrap_servers": bootstrap})
    async with asyncio.timeout(15), Cluster(kafka) as cluster:
        while True:
            try:
                return [tp.partition for tp in await cluster.partitions(topic)]
            except TopicMissing:
                await asyncio.sleep(0.1)


async def read_all(
    bootstrap: str, topic: str, timeout_s: float = 30
) -> list[ConsumerRecord[bytes, bytes]]:
    """Read every record the topic holds now, from the beginning up to its end offsets."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    try:
        partitions = [TopicPartition(topic, p) for p in await partitions_of(bootstrap, topic)]
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        async with asyncio.timeout(timeout_s):
            while not await _caught_up(consumer, ends):
                batch = await consumer.getmany(timeout_ms=500)
                records.extend(record for part in batch.values() for record in part)
    finally:
        await consumer.stop()
    return records


async def _caught_up(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> bool:
    for tp, end in ends.items():
        if await consumer.position(tp) < end:
            return False
    return True
