"""Create the connector's topics idempotently: raw and dead letters shaped for replay, and the
compacted delivery-state topic partitioned like the raw topic."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, for_code

from connector.config import MIB, KafkaSettings, TopicSettings
from connector.errors import ConfigError
from connector.kafka_security import client_kwargs, connect_failure

log = logging.getLogger(__name__)

TOPIC_ALREADY_EXISTS = 36
# How long to wait for a topic created a moment ago to show its partitions: 50 x 0.1 s.
METADATA_ATTEMPTS = 50
METADATA_PAUSE_S = 0.1
# Kafka compacts closed segments only: the open one is read in full by every restore. 16 MiB
# keeps that tail small beside a partition's compacted state (1,000,000 users of about 150 bytes
# over 12 partitions are 12.5 MB each), where the default 1 GiB would dwarf it.
STATE_SEGMENT_BYTES = 16 * MIB


@dataclass(frozen=True)
class TopicSpec:
    """One topic as `ensure_topics` asks Kafka for it."""

    name: str
    partitions: int
    replication_factor: int
    configs: dict[str, str]


@dataclass(frozen=True)
class PartitionMismatch:
    """A state topic whose partition count is not the raw topic's.

    Raw partition p keeps its delivery state in state partition p, so the counts must agree.
    """

    state_topic: str
    state_partitions: int
    raw_topic: str
    raw_partitions: int

    def advice(self) -> str:
        """What is wrong and what to do about it, in a sentence or two."""
        state, raw = self.state_partitions, self.raw_partitions
        said = (
            f"state topic {self.state_topic} has {state} partitions, "
            f"raw topic {self.raw_topic} has {raw}"
        )
        if state < raw:
            return (
                f"{said}: raw partitions {state} to {raw - 1} have no state partition to keep "
                f"what Braze confirmed in. Add partitions to the state topic: "
                f"kafka-topics.sh --alter --topic {self.state_topic} --partitions {raw} "
                f"(with Strimzi, set spec.partitions to {raw} in its KafkaTopic)."
            )
        return (
            f"{said}: state partitions {raw} to {state - 1} stay unused, which is harmless. "
            f"Kafka cannot remove partitions; when the raw topic gets more, give both topics "
            f"the same count."
        )


@dataclass(frozen=True)
class Ensured:
    """What `ensure` did: the topics it created, and a state topic partitioned unlike raw."""

    created: tuple[str, ...]
    mismatch: PartitionMismatch | None = None


def replication(topics: TopicSettings, brokers: int) -> tuple[int, int]:
    """The replication factor and `min.insync.replicas` for a cluster of `brokers` brokers."""
    factor = topics.topic_replication_factor
    if factor == -1:
        factor = min(3, brokers)
    if factor < 1 or factor > brokers:
        raise ConfigError(f"TOPIC_REPLICATION_FACTOR {factor} cannot be met by {brokers} broker(s)")
    min_isr = topics.topic_min_insync_replicas or max(1, min(2, factor - 1))
    if min_isr > factor:
        raise ConfigError(
            f"TOPIC_MIN_INSYNC_REPLICAS {min_isr} exceeds the replication factor {factor}"
        )
    return factor, min_isr


def plan(
    topics: TopicSettings, brokers: int, raw_partitions: int | None = None
) -> tuple[TopicSpec, ...]:
    """The raw, dead-letter and state topics for a cluster of `brokers` brokers.

    `raw_partitions` is the existing raw topic's partition count: the state topic takes it.
    """
    factor, min_isr = replication(topics, brokers)
    common = {
        "min.insync.replicas": str(min_isr),
        "max.message.bytes": str(topics.topic_max_message_bytes),
    }
    history = {**common, "cleanup.policy": "delete", "retention.ms": str(topics.topic_retention_ms)}
    # The latest state of every user is kept for as long as the user exists: no time limit.
    state = {
        **common,
        "cleanup.policy": "compact",
        "retention.ms": "-1",
        "segment.bytes": str(STATE_SEGMENT_BYTES),
    }
    partitions = topics.topic_partitions
    return (
        TopicSpec(topics.raw_topic, partitions, factor, history),
        TopicSpec(topics.dlq_topic, partitions, factor, history),
        TopicSpec(topics.state_topic, raw_partitions or partitions, factor, state),
    )


async def ensure_topics(kafka: KafkaSettings, topics: TopicSettings) -> list[str]:
    """Create whichever of the connector's topics are missing; return the ones created.

    A state topic partitioned unlike the raw topic is logged as a warning that says what to do.
    """
    ensured = await ensure(kafka, topics)
    if ensured.mismatch is not None:
        log.warning(
            ensured.mismatch.advice(),
            extra={
                "topic": ensured.mismatch.state_topic,
                "partitions": ensured.mismatch.state_partitions,
            },
        )
    return list(ensured.created)


async def ensure(kafka: KafkaSettings, topics: TopicSettings) -> Ensured:
    """Create whichever of the connector's topics are missing; report what it did and found."""
    admin = AIOKafkaAdminClient(**client_kwargs(kafka, "admin"))
    try:
        await admin.start()
    except KafkaError as exc:
        raise await connect_failure(kafka, exc) from None
    try:
        return await _ensure(admin, topics)
    finally:
        await admin.close()


async def _ensure(admin: AIOKafkaAdminClient, topics: TopicSettings) -> Ensured:
    brokers = len((await admin.describe_cluster())["brokers"])
    raw, dlq, _ = plan(topics, brokers)  # refuses a replication the cluster cannot meet, first
    # Kafka's topic list may lag a creation by another client: creating a listed-missing topic
    # that exists after all is answered "already exists", and the raw topic is counted after.
    existing = set(await admin.list_topics())
    created = await _create(admin, [spec for spec in (raw, dlq) if spec.name not in existing])
    raw_partitions = (await _partition_counts(admin, {raw.name})).get(raw.name, raw.partitions)
    state = plan(topics, brokers, raw_partitions)[2]
    if state.name not in existing:
        created += await _create(admin, [state])
    if state.name in created:
        return Ensured(tuple(created))
    found = (await _partition_counts(admin, {state.name})).get(state.name)
    if found is None or found == raw_partitions:
        return Ensured(tuple(created))
    return Ensured(tuple(created), PartitionMismatch(state.name, found, raw.name, raw_partitions))


async def _partition_counts(admin: AIOKafkaAdminClient, names: set[str]) -> dict[str, int]:
    """The partition count of each of these existing topics.

    Only topics known to exist are described: describing another may auto-create it. A topic
    created a moment ago may show no partitions yet; it is asked again for a few seconds, then
    left out.
    """
    counts: dict[str, int] = {}
    for attempt in range(METADATA_ATTEMPTS):
        unknown = sorted(names - counts.keys())
        if not unknown:
            break
        if attempt:
            await asyncio.sleep(METADATA_PAUSE_S)
        counts |= {
            entry["topic"]: len(entry["partitions"])
            for entry in await admin.describe_topics(unknown)
            if not entry["error_code"] and entry["partitions"]
        }
    return counts


async def _create(admin: AIOKafkaAdminClient, specs: list[TopicSpec]) -> list[str]:
    if not specs:
        return []
    new_topics = [
        NewTopic(spec.name, spec.partitions, spec.replication_factor, topic_configs=spec.configs)
        for spec in specs
    ]
    response = await admin.create_topics(new_topics)
    partitions = {spec.name: spec.partitions for spec in specs}
    created = []
    for topic, code, *rest in response.topic_errors:
        if code == 0:
            created.append(topic)
            log.info("created topic", extra={"topic": topic, "partitions": partitions[topic]})
        elif code != TOPIC_ALREADY_EXISTS:
            detail = rest[0] if rest and rest[0] else for_code(code).__name__
            raise ConfigError(f"Kafka refused to create topic {topic}: {detail}")
    return created
