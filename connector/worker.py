"""The worker service: one member of the consumer group running the pipeline until SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer

from connector.braze import AdaptiveLimiter, BrazeClient, RateBudget
from connector.config import KafkaSettings, TopicSettings, WorkerSettings
from connector.deadletter import DeadLetters
from connector.delivery_state import DeliveryState
from connector.intake import Rebalance
from connector.kafka_security import client_kwargs, start_consumer
from connector.mapping import Mapping
from connector.metrics import WorkerMetrics
from connector.pipeline import LIVE, Pipeline, Route
from connector.pipeline_state import StateParts
from connector.producer import Publisher
from connector.runtime import WORKER_YOUNG_OBJECTS, tune_gc
from connector.signals import stop_on_signals
from connector.state_store import StateStore
from connector.state_topic import StateWriter, restore

log = logging.getLogger(__name__)

# Most bytes one fetch takes of one partition. Kafka returns a partition's first record batch
# whole even when it is larger (KIP-74), so this bounds memory, not the size of a lead. Chunks of
# the topic's max.message.bytes (2 MiB) made a worker under a binding budget grow to 230-290 MB
# RSS over a million-lead backlog; chunks of 256 KiB keep it near 140 MB.
PARTITION_FETCH_BYTES = 256 * 1024


@dataclass(frozen=True)
class WorkerConfig:
    """Everything the worker service needs, parsed at the edge."""

    kafka: KafkaSettings
    topics: TopicSettings
    worker: WorkerSettings


@contextlib.asynccontextmanager
async def delivering(
    config: WorkerConfig,
    consumer: AIOKafkaConsumer,
    mapping: Mapping,
    topic: str,
    share: float,
    route: Callable[[Publisher], Route] | None = None,
) -> AsyncIterator[tuple[Pipeline, Publisher]]:
    """A pipeline for `topic` with its Braze client, its share of the budget, its delivery
    state (the local store and the state topic's writer) and the dead-letter publisher (yielded
    too), all closed on the way out, in reverse order; the worker service and replay use it.
    `route`, given the dead-letter publisher (a redrive writes its markers there), says what the
    pipeline does besides delivering; the live worker's by default."""
    settings, kafka = config.worker, config.kafka
    limiter = AdaptiveLimiter(RateBudget.parse(settings.braze_rate_limit), share=share)
    client = BrazeClient.from_settings(settings, settings.worker_max_requests_in_flight)
    max_bytes = config.topics.topic_max_message_bytes
    state_topic = config.topics.state_topic
    with StateStore.open(settings.state_dir, settings.state_cache_mb) as store:
        async with (
            Publisher(kafka, config.topics.dlq_topic, max_bytes) as dlq,
            StateWriter(kafka, state_topic, store=store) as writer,
            client,
        ):
            dead_letters = DeadLetters(dlq, mapping.version)
            metrics = WorkerMetrics()
            chosen = LIVE if route is None else route(dlq)
            decisions = DeliveryState(
                store, window_days=settings.state_event_window_days, resend=chosen.resend
            )
            state = StateParts(
                decisions, store, writer, functools.partial(restore, kafka, state_topic)
            )
            pipeline = Pipeline(
                consumer,
                client,
                limiter,
                dead_letters,
                mapping,
                settings,
                metrics,
                topic,
                chosen,
                state,
            )
            try:
                yield pipeline, dlq
            finally:
                await pipeline.close()


async def serve(config: WorkerConfig, stop: asyncio.Event | None = None) -> None:
    """Run one worker until SIGTERM/SIGINT (or `stop`): drain, commit, stop consuming."""
    from connector.health import health_app, start_health
    from connector.mapping import load_mapping

    settings = config.worker
    mapping = load_mapping(settings.mapping_file)
    tune_gc(WORKER_YOUNG_OBJECTS)
    stop = stop or stop_on_signals()
    consumer = consumer_for(config)
    topic = config.topics.raw_topic
    share = settings.braze_rate_share
    async with delivering(config, consumer, mapping, topic, share) as (pipeline, _):

        async def ready() -> str | None:
            return pipeline.check_ready(stop.is_set())

        pipeline.check_ready(stop.is_set())
        health = health_app(ready, pipeline.metrics.render)
        runner = await start_health(health, settings.worker_host, settings.worker_port)
        try:
            await consume(pipeline, stop, config)
        finally:
            await runner.cleanup()


def consumer_for(config: WorkerConfig) -> AIOKafkaConsumer:
    """The group member's consumer: commits by hand, from the earliest offset when new.

    A fetch's bytes are held until its records are taken, next to the pending records:
    WORKER_FETCH_MAX_BYTES bounds them (aiokafka's 50 MiB would dwarf the records' own).
    """
    return AIOKafkaConsumer(
        group_id=config.worker.consumer_group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=PARTITION_FETCH_BYTES,
        fetch_max_bytes=config.worker.worker_fetch_max_bytes,
        rebalance_timeout_ms=int(config.worker.worker_drain_timeout_s * 1000) + 10_000,
        # Static membership (KIP-345): a member with an instance id does not leave the group
        # when it stops, so a restart within the session timeout takes its partitions back.
        group_instance_id=config.worker.worker_instance_id,
        session_timeout_ms=int(config.worker.worker_session_timeout_s * 1000),
        **client_kwargs(config.kafka, "worker"),
    )


class Housekeeping:
    """Between fetches: keep readiness current, commit and publish lag every interval."""

    def __init__(self, pipeline: Pipeline, stop: asyncio.Event, interval_s: float) -> None:
        self.pipeline = pipeline
        self.stop = stop
        self.interval_s = interval_s
        self.last = time.monotonic()

    async def __call__(self) -> bool:
        """Do what is due; the live worker is never done before it is stopped."""
        self.pipeline.check_ready(self.stop.is_set())  # kept current for scrapes, not probes only
        if time.monotonic() - self.last >= self.interval_s:
            await self.pipeline.commit()
            self.pipeline.update_lag()
            self.last = time.monotonic()
        return False


async def consume(pipeline: Pipeline, stop: asyncio.Event, config: WorkerConfig) -> None:
    """Run the pipeline as a member of the consumer group until `stop` is set."""
    consumer = pipeline.consumer
    await start_consumer(consumer, config.kafka)
    consumer.subscribe([config.topics.raw_topic], listener=Rebalance(pipeline))
    try:
        await pipeline.run(
            stop, Housekeeping(pipeline, stop, config.worker.worker_commit_interval_s)
        )
    finally:
        await consumer.stop()
    log.info("worker stopped")
