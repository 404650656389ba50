"""The backlog of the worker benchmark: Outgrow-like leads in a fresh raw topic.

Leads are deterministic in their number: one in five comes from a few hundred repeat visitors,
the rest are spread over every person; a third of the people carry a CRM id in a hidden field,
the others are known by e-mail, as the shipped mapping expects. Records are keyed and carry the
headers the receiver writes, and go to the partition the receiver's producer would choose.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import orjson

from connector.config import (
    KafkaSettings,
    TopicSettings,
    load,
)
from connector.keys import record_key
from connector.mapping import load_mapping
from connector.producer import partition_of

PARTITIONS = 12
FILL_BATCH = 512 * 1024
HOT_USERS = 500  # repeat visitors: every fifth lead comes from one of them
EPOCH_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z, the first lead's time


# --------------------------------------------------------------------------- leads

QUIZZES: tuple[dict[str, Any], ...] = (
    {
        "calc_id": "5f7b1e2c9a3d4b0017c0ffee",
        "calc_name": "Which savings plan suits you?",
        "type": "Calculator",
        "questions": (
            ("How much do you save each month?", (150, 400, 900, "2,000+")),
            ("When do you plan to retire?", ("In 10 years", "In 20-30 years", "Not sure")),
            ("How do you feel about investment risk?", ("Low", "Moderate", "High")),
        ),
        "outcomes": ("Starter", "Growth Stage", "Wealth Builder"),
    },
    {
        "calc_id": "60a1d2e3f4b5c6d7e8f90123",
        "calc_name": "How mature is your marketing?",
        "type": "Graded Quiz",
        "questions": (
            ("Do you segment your e-mail list?", ("Yes", "No", "Partly")),
            ("How many campaigns a month?", (1, 4, 12)),
            ("Which channels do you use?", ("E-mail", "E-mail, SMS", "E-mail, SMS, Push")),
            ("Do you run A/B tests?", ("Always", "Sometimes", "Never")),
        ),
        "outcomes": ("Beginner", "Practitioner", "Expert"),
    },
    {
        "calc_id": "61b2c3d4e5f60718293a4b5c",
        "calc_name": "Find your ideal plan",
        "type": "Outcome Quiz",
        "questions": (
            ("How big is your team?", ("1-5", "6-50", "51+")),
            ("What matters most?", ("Price", "Features", "Support")),
        ),
        "outcomes": ("Basic", "Pro", "Enterprise"),
    },
)
DOMAINS = ("example.com", "example.org", "example.net", "mail.example.com")
FIRST_NAMES = ("Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken")


def user_of(index: int, users: int) -> int:
    """Who submitted lead `index`: every fifth lead a repeat visitor, the rest spread evenly."""
    hot = min(HOT_USERS, users)
    if index % 5 == 0:
        return (index // 5 * 7_919) % hot
    # The other leads, numbered 0, 1, 2, ... and spread over everyone by a large prime.
    return (index - index // 5 - 1) * 104_729 % users


@functools.lru_cache(maxsize=65_536)
def person(user: int) -> dict[str, Any]:
    """The contact details of one person, the same in each of their leads."""
    name = FIRST_NAMES[user % len(FIRST_NAMES)]
    return {
        "fullName": f"{name} Tester{user}",
        "email": f"{name.lower()}.tester{user}@{DOMAINS[user % len(DOMAINS)]}",
        "phone": f"+1 202 555 {user % 10_000:04d}",
    }


def lead(index: int, users: int) -> dict[str, Any]:
    """An Outgrow-like lead (600 to 800 bytes of JSON); deterministic in `index`."""
    user = user_of(index, users)
    quiz = QUIZZES[index % len(QUIZZES)]
    score = (index * 37) % 101
    created_ms = EPOCH_MS + index * 40
    document: dict[str, Any] = {
        "event": "LEADS",
        "id": f"{index:024x}",
        "calc_id": quiz["calc_id"],
        "calc_name": quiz["calc_name"],
        "type": quiz["type"],
        "created_at": f"{_day_and_time(created_ms // 1000)}.{created_ms % 1000:03d}Z",
        "user_info": person(user),
        "questions": [
            {"question": text, "answer": answers[(index // (n + 1)) % len(answers)]}
            for n, (text, answers) in enumerate(quiz["questions"])
        ],
        "results": [
            {"title": "Score", "value": score if index % 4 else str(score)},
            {"title": "Outcome", "value": quiz["outcomes"][score * len(quiz["outcomes"]) // 101]},
        ],
        "total_question": len(quiz["questions"]),
        "answered": len(quiz["questions"]),
        "url_params": {"utm_source": "newsletter", "utm_campaign": f"spring-{index % 7}"},
    }
    if user % 3 == 0:  # a third of the people arrive with an id passed in as a hidden field
        document["hidden_fields"] = {"external_id": f"crm-{user:08d}"}
    return document


@functools.lru_cache(maxsize=4_096)
def _day_and_time(epoch_s: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch_s))


SHIPPED_MAPPING = load_mapping()  # the receiver keys records by its identity rules
Headers = list[tuple[str, bytes]]


def raw_record(index: int, users: int) -> tuple[bytes | None, bytes, Headers]:
    """Key, value and headers of one lead, as the receiver publishes it."""
    document, received_at_ms = lead(index, users), time.time_ns() // 1_000_000
    headers = [
        ("content-type", b"application/json"),
        ("received-at", str(received_at_ms).encode()),
        ("source", b"default"),
        ("event-id", os.urandom(16).hex().encode()),  # the receiver's uuid4().hex, as cheaply
    ]
    key = record_key(SHIPPED_MAPPING, document, "default", received_at_ms)
    return key, orjson.dumps(document), headers


class Partitioner:
    """The producer's partitioning (murmur2 of the key); records without a key go round."""

    def __init__(self, partitions: int) -> None:
        self._partitions = partitions
        self._unkeyed = 0

    def __call__(self, key: bytes | None) -> int:
        if key is not None:
            return partition_of(key, self._partitions)
        self._unkeyed += 1
        return self._unkeyed % self._partitions


async def _fill(bootstrap: str, topic: str, events: int, users: int) -> None:
    from aiokafka import AIOKafkaProducer

    # Throughput, not durability: acks=1 and whole batches per partition, built here, so that
    # filling takes seconds; the worker reads the same records either way.
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=1, max_batch_size=FILL_BATCH)
    await producer.start()
    try:
        choose = Partitioner(PARTITIONS)
        batches = {p: producer.create_batch() for p in range(PARTITIONS)}
        sent = []
        for index in range(events):
            key, value, headers = raw_record(index, users)
            partition = choose(key)
            if not _append(batches[partition], key, value, headers):
                sent.append(
                    await producer.send_batch(batches[partition], topic, partition=partition)
                )
                batches[partition] = producer.create_batch()
                if not _append(batches[partition], key, value, headers):
                    raise ValueError(f"lead {index} does not fit a batch of {FILL_BATCH} bytes")
        for partition, batch in batches.items():
            if batch.record_count():
                sent.append(await producer.send_batch(batch, topic, partition=partition))
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


def _append(batch: Any, key: bytes | None, value: bytes, headers: Headers) -> bool:
    """Add a record to a producer batch; False when the batch is full."""
    return batch.append(key=key, value=value, timestamp=None, headers=headers) is not None


def fill(bootstrap: str, topic: str, events: int, users: int) -> None:
    """Write the backlog to the raw topic."""
    asyncio.run(_fill(bootstrap, topic, events, users))


async def _create_topics(bootstrap: str) -> TopicSettings:
    from connector.topics import ensure_topics

    suffix = uuid.uuid4().hex[:10]
    kafka = load(KafkaSettings, {"kafka_bootstrap_servers": bootstrap})
    names = {
        "raw_topic": f"bench.raw.{suffix}",
        "dlq_topic": f"bench.dlq.{suffix}",
        "state_topic": f"bench.state.{suffix}",
    }
    topics = load(TopicSettings, {**names, "topic_partitions": PARTITIONS})
    await ensure_topics(kafka, topics)
    return topics


async def _delete_topics(bootstrap: str, names: list[str]) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics(names)
    finally:
        await admin.close()


async def _create_state_topic(bootstrap: str, name: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        compacted = {"cleanup.policy": "compact"}
        await admin.create_topics([NewTopic(name, PARTITIONS, 1, topic_configs=compacted)])
    finally:
        await admin.close()


@contextlib.contextmanager
def fresh_state_topic(bootstrap: str, topics: TopicSettings) -> Iterator[TopicSettings]:
    """The topics with a state topic of their own, deleted afterwards: a worker run restores
    nothing another run delivered."""
    name = f"bench.state.{uuid.uuid4().hex[:10]}"
    asyncio.run(asyncio.wait_for(_create_state_topic(bootstrap, name), 30))
    try:
        yield topics.model_copy(update={"state_topic": name})
    finally:
        with contextlib.suppress(Exception):
            asyncio.run(asyncio.wait_for(_delete_topics(bootstrap, [name]), 30))


@contextlib.contextmanager
def bench_topics(bootstrap: str) -> Iterator[TopicSettings]:
    """Fresh raw and dead-letter topics, deleted afterwards (they may live on a shared cluster)."""
    topics = asyncio.run(_create_topics(bootstrap))
    try:
        yield topics
    finally:
        with contextlib.suppress(Exception):
            names = [topics.raw_topic, topics.dlq_topic]
            asyncio.run(asyncio.wait_for(_delete_topics(bootstrap, names), 30))


# --------------------------------------------------------------------------- Kafka read-back


async def _end_offsets(bootstrap: str, topic: str, group: str | None) -> tuple[int, int]:
    """(sum of end offsets, sum of the group's committed offsets) over a topic's partitions."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    partitions = [
        TopicPartition(topic, p["partition"])
        for t in described
        if t["topic"] == topic
        for p in t["partitions"]
    ]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        ends = await consumer.end_offsets(partitions)
        committed = 0
        if group is not None:
            for tp in partitions:
                committed += await consumer.committed(tp) or 0
        return sum(ends.values()), committed
    finally:
        await consumer.stop()


def records_and_commits(bootstrap: str, topic: str, group: str | None) -> tuple[int, int]:
    """Records in a topic and how many of them the group committed."""
    return asyncio.run(asyncio.wait_for(_end_offsets(bootstrap, topic, group), 60))
