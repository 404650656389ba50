"""Topic creation: planned from settings, idempotent against the real broker."""

from __future__ import annotations

import uuid

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from connector.config import KafkaSettings, TopicSettings, load
from connector.errors import ConfigError, KafkaUnavailable
from connector.topics import ensure_topics, plan


def topics(**values: object) -> TopicSettings:
    return load(TopicSettings, values)


def test_plan_defaults_to_three_replicas_when_the_cluster_allows() -> None:
    assert plan(topics(), brokers=5).replication_factor == 3
    assert plan(topics(), brokers=5).configs["min.insync.replicas"] == "2"
    assert plan(topics(), brokers=1).replication_factor == 1
    assert plan(topics(), brokers=1).configs["min.insync.replicas"] == "1"


def test_plan_refuses_what_the_cluster_cannot_meet() -> None:
    with pytest.raises(ConfigError, match="cannot be met by 1 broker"):
        plan(topics(topic_replication_factor=3), brokers=1)
    with pytest.raises(ConfigError, match="exceeds the replication factor"):
        plan(topics(topic_replication_factor=1, topic_min_insync_replicas=2), brokers=3)


async def test_ensure_creates_once_then_reports_nothing_new(bootstrap_servers: str) -> None:
    suffix = uuid.uuid4().hex[:8]
    kafka = load(KafkaSettings, {"kafka_bootstrap_servers": bootstrap_servers})
    wanted = topics(
        raw_topic=f"ensure.raw.{suffix}",
        dlq_topic=f"ensure.dlq.{suffix}",
        topic_partitions=4,
        topic_retention_ms=3_600_000,
    )
    assert sorted(await ensure_topics(kafka, wanted)) == sorted(
        [wanted.raw_topic, wanted.dlq_topic]
    )
    assert await ensure_topics(kafka, wanted) == []

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        described = await admin.describe_topics([wanted.raw_topic])
        assert len(described[0]["partitions"]) == 4
        configs = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, wanted.raw_topic)]
        )
        entries = {entry[0]: entry[1] for entry in configs[0].resources[0][4]}
        assert entries["retention.ms"] == "3600000"
        assert entries["max.message.bytes"] == str(2 * 1024 * 1024)
    finally:
        await admin.close()


async def test_ensure_without_a_broker_says_so() -> None:
    kafka = load(
        KafkaSettings,
        {"kafka_bootstrap_servers": "127.0.0.1:1", "kafka_request_timeout_ms": 2000},
    )
    with pytest.raises(KafkaUnavailable, match=r"cannot reach Kafka at 127\.0\.0\.1:1"):
        await ensure_topics(kafka, topics())
