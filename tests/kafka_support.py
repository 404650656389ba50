"""Helpers for tests that talk to the real broker: fresh topics, reading them back."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from connector.config import KafkaSettings, TopicSettings, load
from connector.topics import ensure_topics


@dataclass(frozen=True)
class Topics:
    """A pair of fresh topics and the settings that name them."""

    kafka: KafkaSettings
    topics: TopicSettings

    @property
    def raw(self) -> str:
        return self.topics.raw_topic


async def fresh_topics(bootstrap: str, partitions: int = 3) -> Topics:
    """Create a raw and a dead-letter topic with unique names."""
    suffix = uuid.uuid4().hex[:10]
    kafka = load(KafkaSettings, {"kafka_bootstrap_servers": bootstrap})
    topics = load(
        TopicSettings,
        {
            "raw_topic": f"test.raw.{suffix}",
            "dlq_topic": f"test.dlq.{suffix}",
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
        partitions = [TopicPartition(topic, p) for p in await partitions_of(consumer, topic)]
        ends = await consumer.end_offsets(partitions)
        return {tp.partition: offset for tp, offset in ends.items()}
    finally:
        await consumer.stop()


async def partitions_of(consumer: AIOKafkaConsumer, topic: str) -> list[int]:
    """The partition numbers of a topic, once the consumer's metadata knows them."""
    async with asyncio.timeout(15):
        while not consumer.partitions_for_topic(topic):
            await consumer._client.add_topic(topic)  # noqa: SLF001 - track the topic's metadata
            await asyncio.sleep(0.1)
    return sorted(consumer.partitions_for_topic(topic) or ())


async def read_all(
    bootstrap: str, topic: str, expected: int, timeout_s: float = 30
) -> list[ConsumerRecord[bytes, bytes]]:
    """Read a topic from the beginning until `expected` records arrived, then a little more."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    try:
        consumer.assign([TopicPartition(topic, p) for p in await partitions_of(consumer, topic)])
        async with asyncio.timeout(timeout_s):
            while len(records) < expected:
                batch = await consumer.getmany(timeout_ms=500)
                records.extend(record for part in batch.values() for record in part)
        # One more poll shows whether anything beyond the expected count was written.
        extra = await consumer.getmany(timeout_ms=1_000)
        records.extend(record for part in extra.values() for record in part)
    finally:
        await consumer.stop()
    return records
