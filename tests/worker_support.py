"""A pipeline for worker tests: fresh topics, a sandbox Braze, workers run in this event loop."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from connector.config import WorkerSettings, load
from connector.deadletter import Reason, SourceRecord
from connector.mapping import BrazeUpdate, load_mapping, map_record
from connector.payloads import JSON
from connector.producer import Publisher
from connector.worker import WorkerConfig, consume, consumer_for, delivering, serve
from outgrow_braze_dev.sandbox.app import Sandbox
from outgrow_braze_dev.sandbox.state import SandboxConfig
from outgrow_braze_dev.settings import SANDBOX_DEV_API_KEY, SandboxSettings
from tests.kafka_support import Topics, end_offsets, fresh_topics, read_all


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def lead(user: int, round_: int, **extra: Any) -> dict[str, Any]:
    """A quiz submission of user `user`; the score tells rounds apart."""
    return {
        "id": f"lead-{user}-{round_}",
        "calc_id": "5892d26dcbff7e0b1c34bf65",
        "calc_name": "Marketing maturity",
        "created_at": "2026-11-28T10:20:30.000Z",
        "external_id": f"user-{user}",
        "user_info": {"email": f"user{user}@example.com"},
        "results": [
            {"title": "Score", "value": round_ * 1000 + user},
            {"title": "Outcome", "value": f"segment-{round_}"},
        ],
        **extra,
    }


class Letters:
    """The dead-letter topic as a list, for units that write dead letters."""

    def __init__(self) -> None:
        self.sent: list[tuple[SourceRecord, Reason]] = []

    async def send_all(self, records: Sequence[tuple[SourceRecord, Reason]]) -> None:
        self.sent.extend(records)


MAPPING = load_mapping()


def user_key_of(document: dict[str, Any]) -> bytes:
    """The key the receiver gives a lead's record (issue 15): its user's Braze identity."""
    update = map_record(MAPPING, orjson.dumps(document), JSON, source="default", received_at_ms=0)
    assert isinstance(update, BrazeUpdate)
    return update.user_key.encode()


async def observed_worker(
    config: WorkerConfig, stop: asyncio.Event, running: RunningWorker
) -> None:
    """The worker service without its health server, with the shipped mapping (its events
    keyed by lead id); the pipeline it runs is `running.pipeline`, for its counts."""
    consumer = consumer_for(config)
    topic, share = config.topics.raw_topic, config.worker.braze_rate_share
    async with delivering(config, consumer, MAPPING, topic, share) as (line, _):
        running.pipeline = line
        await consume(line, stop, config)


@dataclass
class RunningWorker:
    task: asyncio.Task[None]
    stop: asyncio.Event
    port: int
    pipeline: Any = None  # a keyed worker's pipeline, once it runs

    async def halt(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, timeout=60)


@dataclass
class Pipeline:
    topics: Topics
    sandbox: Sandbox
    group: str = field(default_factory=lambda: f"test-group-{uuid.uuid4().hex[:8]}")
    workers: list[RunningWorker] = field(default_factory=list)

    @property
    def bootstrap(self) -> str:
        return self.topics.kafka.kafka_bootstrap_servers

    def worker_settings(self, **overrides: Any) -> WorkerSettings:
        values = {
            "braze_rest_endpoint": self.sandbox.base_url,
            "braze_api_key": SANDBOX_DEV_API_KEY,
            "consumer_group": self.group,
            "worker_host": "127.0.0.1",
            "worker_port": free_port(),
            "worker_commit_interval_s": 0.2,
            "worker_drain_timeout_s": 10,
            "worker_halt_probe_s": 0.5,
            **overrides,
        }
        return load(WorkerSettings, values)

    def start_worker(self, **overrides: Any) -> RunningWorker:
        settings = self.worker_settings(**overrides)
        stop = asyncio.Event()
        config = WorkerConfig(self.topics.kafka, self.topics.topics, settings)
        task = asyncio.create_task(serve(config, stop))
        running = RunningWorker(task, stop, settings.worker_port)
        self.workers.append(running)
        return running

    def start_observed_worker(self, **overrides: Any) -> RunningWorker:
        """A worker whose pipeline a test can read (see `observed_worker`)."""
        settings = self.worker_settings(**overrides)
        stop = asyncio.Event()
        config = WorkerConfig(self.topics.kafka, self.topics.topics, settings)
        running = RunningWorker(None, stop, settings.worker_port)  # type: ignore[arg-type]
        running.task = asyncio.create_task(observed_worker(config, stop, running))
        self.workers.append(running)
        return running

    async def produce(self, documents: list[dict[str, Any]], *, by_user: bool = False) -> None:
        """Write raw records the way the receiver does: key, body, headers. The key is the
        external id, or with `by_user` the user's Braze identity (issue 15)."""
        async with Publisher(self.topics.kafka, self.topics.raw, 2 * 1024 * 1024) as publisher:
            await publisher.wait_connected(30)
            await asyncio.gather(*(self._publish(publisher, d, by_user) for d in documents))

    async def _publish(self, publisher: Publisher, document: dict[str, Any], by_user: bool) -> None:
        headers = [
            ("content-type", b"application/json"),
            ("received-at", str(time.time_ns() // 1_000_000).encode()),
            ("source", b"default"),
            ("event-id", uuid.uuid4().hex.encode()),
        ]
        if by_user:
            key: bytes | None = user_key_of(document)
        else:
            key = str(document.get("external_id", document.get("id", ""))).encode() or None
        await publisher.publish(key, orjson.dumps(document), headers, 30)

    async def committed(self) -> dict[int, int]:
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=self.group)
        await consumer.start()
        try:
            ends = await end_offsets(self.bootstrap, self.topics.raw)
            result = {}
            for partition in ends:
                offset = await consumer.committed(TopicPartition(self.topics.raw, partition))
                result[partition] = offset if offset is not None else 0
            return result
        finally:
            await consumer.stop()

    async def all_committed(self, timeout_s: float = 60) -> None:
        """Wait until the group committed every partition up to its end."""
        ends = await end_offsets(self.bootstrap, self.topics.raw)
        async with asyncio.timeout(timeout_s):
            while await self.committed() != ends:
                await asyncio.sleep(0.3)

    async def dead_letters(self) -> list[Any]:
        return await read_all(self.bootstrap, self.topics.topics.dlq_topic)

    def profile(self, user: int) -> Any:
        return self.sandbox.state.store.by_external_id(f"user-{user}")


async def commit(line: Pipeline, offsets: dict[int, int]) -> None:
    """Commit raw-topic offsets for the pipeline's group, as a worker of it would."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=line.bootstrap, group_id=line.group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        wanted = {TopicPartition(line.topics.raw, p): o for p, o in offsets.items()}
        consumer.assign(list(wanted))
        await consumer.commit(wanted)
    finally:
        await consumer.stop()


async def wait_for(condition: Callable[[], bool], timeout_s: float = 60) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.2)


def sandbox_settings(**overrides: Any) -> SandboxSettings:
    return load(SandboxSettings, {"sandbox_port": 0, **overrides})


@asynccontextmanager
async def pipeline(
    bootstrap: str, partitions: int = 3, **sandbox_overrides: Any
) -> AsyncIterator[Pipeline]:
    topics = await fresh_topics(bootstrap, partitions)
    sandbox = Sandbox(SandboxConfig.from_settings(sandbox_settings(**sandbox_overrides)))
    async with sandbox:
        running = Pipeline(topics, sandbox)
        try:
            yield running
        finally:
            for worker in running.workers:
                worker.stop.set()
            for worker in running.workers:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(worker.task, timeout=60)
