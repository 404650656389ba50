"""Create the raw and dead-letter topics idempotently, shaped for replay."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, for_code

from connector.config import KafkaSettings, TopicSettings
from connector.errors import ConfigError
from connector.kafka_security import client_kwargs, connect_failure

log = logging.getLogger(__name__)

TOPIC_ALREADY_EXISTS = 36


@dataclass(frozen=True)
class TopicPlan:
    """What `ensure_topics` asks Kafka for."""

    names: tuple[str, ...]
    partitions: int
    replication_factor: int
    configs: dict[str, str]


def plan(topics: TopicSettings, brokers: int) -> TopicPlan:
    """Work out partitions, replication and configs for a cluster with `brokers` brokers."""
    replication = topics.topic_replication_factor
    if replication == -1:
        replication = min(3, brokers)
    if replication < 1 or replication > brokers:
        raise ConfigError(
            f"TOPIC_REPLICATION_FACTOR {replication} cannot be met by {brokers} broker(s)"
        )
    min_isr = topics.topic_min_insync_replicas or max(1, min(2, replication - 1))
    if min_isr > replication:
        raise ConfigError(
            f"TOPIC_MIN_INSYNC_REPLICAS {min_isr} exceeds the replication factor {replication}"
        )
    configs = {
        "retention.ms": str(topics.topic_retention_ms),
        "min.insync.replicas": str(min_isr),
        "max.message.bytes": str(topics.topic_max_message_bytes),
        "cleanup.policy": "delete",
    }
    names = (topics.raw_topic, topics.dlq_topic)
    return TopicPlan(names, topics.topic_partitions, replication, configs)


async def ensure_topics(kafka: KafkaSettings, topics: TopicSettings) -> list[str]:
    """Create whichever of the connector's topics are missing; return the ones created."""
    admin = AIOKafkaAdminClient(**client_kwargs(kafka, "admin"))
    try:
        await admin.start()
    except KafkaError as exc:
        raise await connect_failure(kafka, exc) from None
    try:
        return await _create_missing(admin, topics)
    finally:
        await admin.close()


async def _create_missing(admin: AIOKafkaAdminClient, topics: TopicSettings) -> list[str]:
    brokers = len((await admin.describe_cluster())["brokers"])
    wanted = plan(topics, brokers)
    existing = set(await admin.list_topics())
    missing = [name for name in wanted.names if name not in existing]
    if not missing:
        return []
    new_topics = [
        NewTopic(name, wanted.partitions, wanted.replication_factor, topic_configs=wanted.configs)
        for name in missing
    ]
    response = await admin.create_topics(new_topics)
    created = []
    for topic, code, *rest in response.topic_errors:
        if code == 0:
            created.append(topic)
            log.info("created topic", extra={"topic": topic, "partitions": wanted.partitions})
        elif code != TOPIC_ALREADY_EXISTS:
            detail = rest[0] if rest and rest[0] else for_code(code).__name__
            raise ConfigError(f"Kafka refused to create topic {topic}: {detail}")
    return created
