"""Topic creation: planned from settings, idempotent against the real broker; the state topic
compacted and partitioned like the raw topic."""

from __future__ import annotations

import asyncio
import logging
import uuid

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from connector.config import KafkaSettings, TopicSettings, load
from connector.errors import ConfigError, KafkaUnavailable
from connector.topics import (
    STATE_SEGMENT_BYTES,
    PartitionMismatch,
    TopicSpec,
    ensure,
    ensure_topics,
    plan,
)
from tests.cli_support import run_cli


def topics(**values: object) -> TopicSettings:
    return load(TopicSettings, values)


def unique_topics(**values: object) -> TopicSettings:
    suffix = uuid.uuid4().hex[:8]
    names = {
        "raw_topic": f"ensure.raw.{suffix}",
        "dlq_topic": f"ensure.dlq.{suffix}",
        "state_topic": f"ensure.state.{suffix}",
    }
    return topics(**names, **values)


def by_name(specs: tuple[TopicSpec, ...]) -> dict[str, TopicSpec]:
    return {spec.name: spec for spec in specs}


def test_plan_defaults_to_three_replicas_when_the_cluster_allows() -> None:
    for spec in plan(topics(), brokers=5):
        assert spec.replication_factor == 3
        assert spec.configs["min.insync.replicas"] == "2"
    for spec in plan(topics(), brokers=1):
        assert spec.replication_factor == 1
        assert spec.configs["min.insync.replicas"] == "1"


def test_plan_keeps_history_for_replay_and_state_until_compacted() -> None:
    wanted = by_name(plan(topics(topic_partitions=6, topic_retention_ms=1000), brokers=3))
    for name in ("outgrow.events.raw", "outgrow.events.dlq"):
        assert wanted[name].partitions == 6
        assert wanted[name].configs["cleanup.policy"] == "delete"
        assert wanted[name].configs["retention.ms"] == "1000"
    state = wanted["outgrow.braze.state"]
    assert state.partitions == 6
    assert state.configs == {
        "cleanup.policy": "compact",
        "retention.ms": "-1",
        "segment.bytes": str(STATE_SEGMENT_BYTES),
        "min.insync.replicas": "2",
        "max.message.bytes": str(2 * 1024 * 1024),
    }


def test_plan_partitions_the_state_topic_like_an_existing_raw_topic() -> None:
    wanted = by_name(plan(topics(topic_partitions=12), brokers=1, raw_partitions=5))
    assert wanted["outgrow.braze.state"].partitions == 5
    assert wanted["outgrow.events.dlq"].partitions == 12


def test_a_mismatch_says_what_to_do_either_way() -> None:
    fewer = PartitionMismatch("s", 3, "r", 5).advice()
    assert "raw partitions 3 to 4 have no state partition" in fewer
    assert "kafka-topics.sh --alter --topic s --partitions 5" in fewer
    assert "spec.partitions to 5" in fewer
    more = PartitionMismatch("s", 8, "r", 6).advice()
    assert "state partitions 6 to 7 stay unused" in more
    assert "--alter" not in more


def test_plan_refuses_what_the_cluster_cannot_meet() -> None:
    with pytest.raises(ConfigError, match="cannot be met by 1 broker"):
        plan(topics(topic_replication_factor=3), brokers=1)
    with pytest.raises(ConfigError, match="exceeds the replication factor"):
        plan(topics(topic_replication_factor=1, topic_min_insync_replicas=2), brokers=3)


async def describe(bootstrap: str, topic: str) -> tuple[int, dict[str, str]]:
    """Return a topic's partition count and its configuration as the broker reports it."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        # A topic just created may take a moment to show its partitions in the metadata.
        async with asyncio.timeout(30):
            while not (described := await admin.describe_topics([topic]))[0]["partitions"]:
                await asyncio.sleep(0.1)
        configs = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    finally:
        await admin.close()
    entries = {entry[0]: entry[1] for entry in configs[0].resources[0][4]}
    return len(described[0]["partitions"]), entries


async def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()


async def test_ensure_creates_once_then_reports_nothing_new(bootstrap_servers: str) -> None:
    kafka = load(KafkaSettings, {"kafka_bootstrap_servers": bootstrap_servers})
    wanted = unique_topics(topic_partitions=4, topic_retention_ms=3_600_000)
    assert sorted(await ensure_topics(kafka, wanted)) == sorted(
        [wanted.raw_topic, wanted.dlq_topic, wanted.state_topic]
    )
    assert await ensure_topics(kafka, wanted) == []

    partitions, raw = await describe(bootstrap_servers, wanted.raw_topic)
    assert partitions == 4
    assert raw["retention.ms"] == "3600000"
    assert raw["cleanup.policy"] == "delete"
    assert raw["max.message.bytes"] == str(2 * 1024 * 1024)
    partitions, state = await describe(bootstrap_servers, wanted.state_topic)
    assert partitions == 4
    assert state["cleanup.policy"] == "compact"
    assert state["retention.ms"] == "-1"
    assert state["segment.bytes"] == str(STATE_SEGMENT_BYTES)
    assert state["max.message.bytes"] == raw["max.message.bytes"]
    assert state["min.insync.replicas"] == raw["min.insync.replicas"]


async def test_the_state_topic_takes_the_existing_raw_topics_partitions(
    bootstrap_servers: str,
) -> None:
    kafka = load(KafkaSettings, {"kafka_bootstrap_servers": bootstrap_servers})
    wanted = unique_topics(topic_partitions=2)
    await create_topic(bootstrap_servers, wanted.raw_topic, 5)

    ensured = await ensure(kafka, wanted)

    assert sorted(ensured.created) == sorted([wanted.dlq_topic, wanted.state_topic])
    assert ensured.mismatch is None
    assert (await describe(bootstrap_servers, wanted.state_topic))[0] == 5
    assert (await describe(bootstrap_servers, wanted.dlq_topic))[0] == 2


async def test_a_state_topic_partitioned_unlike_raw_is_warned_about(
    bootstrap_servers: str, caplog: pytest.LogCaptureFixture
) -> None:
    kafka = load(KafkaSettings, {"kafka_bootstrap_servers": bootstrap_servers})
    wanted = unique_topics(topic_partitions=4)
    await create_topic(bootstrap_servers, wanted.state_topic, 3)

    with caplog.at_level(logging.WARNING, logger="connector.topics"):
        created = await ensure_topics(kafka, wanted)

    assert sorted(created) == sorted([wanted.raw_topic, wanted.dlq_topic])
    assert (await describe(bootstrap_servers, wanted.state_topic))[0] == 3, "left as it was"
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert (
        warning.getMessage()
        == PartitionMismatch(wanted.state_topic, 3, wanted.raw_topic, 4).advice()
    )


async def test_the_command_prints_each_topic_and_the_mismatch(
    bootstrap_servers: str, capsys: pytest.CaptureFixture[str]
) -> None:
    wanted = unique_topics()
    await create_topic(bootstrap_servers, wanted.raw_topic, 2)
    await create_topic(bootstrap_servers, wanted.state_topic, 1)
    names = ["--raw-topic", wanted.raw_topic, "--dlq-topic", wanted.dlq_topic]
    names += ["--state-topic", wanted.state_topic]

    result = await run_cli(
        capsys, "topics", "ensure", "--kafka-bootstrap-servers", bootstrap_servers, *names
    )

    assert result.code == 0, result.err
    assert result.out.splitlines() == [
        f"{wanted.raw_topic}: exists",
        f"{wanted.dlq_topic}: created",
        f"{wanted.state_topic}: exists",
    ]
    assert f"warning: state topic {wanted.state_topic} has 1 partitions" in result.err
    assert f"--topic {wanted.state_topic} --partitions 2" in result.err


async def test_ensure_without_a_broker_says_so() -> None:
    kafka = load(
        KafkaSettings,
        {"kafka_bootstrap_servers": "127.0.0.1:1", "kafka_request_timeout_ms": 2000},
    )
    with pytest.raises(KafkaUnavailable, match=r"cannot reach Kafka at 127\.0\.0\.1:1"):
        await ensure_topics(kafka, topics())
