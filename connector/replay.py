"""Replay: re-read a range of a topic and deliver it again through the worker's machinery.

The replay reads with manual assignment and no consumer group, so the live worker's committed
offsets are untouched; it shares the Braze budget through its own rate share.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import IO, Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from connector.cluster import Cluster
from connector.config import KafkaSettings, TopicSettings, WorkerSettings
from connector.deadletter import SourceRecord
from connector.errors import ConfigError
from connector.intake import Admission, map_source
from connector.kafka_security import client_kwargs, start_consumer
from connector.mapping import BrazeUpdate, Filtered, Mapping, MappingFailure
from connector.offsets import Trackers
from connector.outcomes import Counts
from connector.pipeline import Pipeline, Route
from connector.pipeline_state import Origin
from connector.producer import Publisher
from connector.worker import WorkerConfig, delivering

log = logging.getLogger(__name__)


# -- what to replay ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Range:
    """Where to start and stop: times and/or explicit `partition:offset` bounds (end exclusive)."""

    from_time: datetime | None = None
    to_time: datetime | None = None
    from_offsets: dict[int, int] = field(default_factory=dict)
    to_offsets: dict[int, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Selection:
    """Which records of the range to deliver; the rest are skipped."""

    source: str | None = None
    identity: str | None = None
    reason: str | None = None
    attributes_only: bool = False  # leave events out, as replays did before the delivery state

    def admits(self, record: SourceRecord) -> bool:
        """Whether a record's headers match the source and dead-letter reason filters."""
        if self.source is not None and record.header("source") != self.source:
            return False
        return self.reason is None or self.reason in (record.header("dlq-reason") or "")

    def shape(self, update: BrazeUpdate) -> BrazeUpdate | None:
        """Apply the identity filter and drop events if asked to; None skips the record."""
        if self.identity is not None and not _is_user(update, self.identity):
            return None
        if self.attributes_only and update.event_payloads:
            update = update.without_events()
        if update.empty:
            return None
        return update


def _is_user(update: BrazeUpdate, identity: str) -> bool:
    wanted = identity.strip().lower()
    values = [str(v).strip().lower() for v in update.identity.values() if not isinstance(v, dict)]
    return wanted in values or update.user_key.lower().endswith(":" + wanted)


def parse_offsets(text: str | None) -> dict[int, int]:
    """Read `0:120,3:77` into {0: 120, 3: 77}."""
    bounds: dict[int, int] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        partition, sep, offset = part.strip().partition(":")
        if not sep or not partition.isdigit() or not offset.isdigit():
            raise ConfigError(f"offset bound {part.strip()!r} is not partition:offset")
        bounds[int(partition)] = int(offset)
    return bounds


@dataclass
class Plan:
    """Per partition: the first offset to read and the offset to stop before."""

    topic: str
    starts: dict[int, int]
    ends: dict[int, int]

    @property
    def total(self) -> int:
        return sum(max(self.ends[p] - self.starts[p], 0) for p in self.starts)

    def resume_argument(self, positions: dict[int, int]) -> str:
        """The `--from-offsets` value that continues from the given positions."""
        return ",".join(f"{p}:{positions.get(p, self.starts[p])}" for p in sorted(self.starts))


async def make_plan(
    kafka: KafkaSettings, consumer: AIOKafkaConsumer, topic: str, bounds: Range
) -> Plan:
    """Resolve times and bounds against the topic's retained offsets."""
    # The topic's partitions come from the admin API: a consumer without a group knows a
    # topic's metadata only once it reads from it.
    async with Cluster(kafka) as cluster:
        tps = await cluster.partitions(topic)
    first = await consumer.beginning_offsets(tps)
    last = await consumer.end_offsets(tps)
    starts = await _at_time(consumer, tps, bounds.from_time, default=first)
    ends = await _at_time(consumer, tps, bounds.to_time, default=last)
    plan = Plan(topic, {}, {})
    for tp in tps:
        start = bounds.from_offsets.get(tp.partition, starts[tp])
        end = bounds.to_offsets.get(tp.partition, ends[tp])
        plan.starts[tp.partition] = min(max(start, first[tp]), last[tp])
        plan.ends[tp.partition] = min(max(end, plan.starts[tp.partition]), last[tp])
    return plan


async def _at_time(
    consumer: AIOKafkaConsumer,
    tps: list[TopicPartition],
    moment: datetime | None,
    default: dict[TopicPartition, int],
) -> dict[TopicPartition, int]:
    if moment is None:
        return dict(default)
    stamp = int(moment.timestamp() * 1000)
    found = await consumer.offsets_for_times({tp: stamp for tp in tps})
    # A partition with no record at or after the time starts (or ends) at its end.
    ends = await consumer.end_offsets(tps)
    return {tp: found[tp].offset if found.get(tp) else ends[tp] for tp in tps}


# -- dry run -------------------------------------------------------------------------------------


@dataclass
class Tally(Counts):
    """What a replay did, for the summary and the exit code: the pipeline's counts, and what
    it read of the plan."""

    read: int = 0
    positions: dict[int, int] = field(default_factory=dict)  # where a resumed run starts

    def line(self) -> str:
        return (
            f"read {self.read:,}, delivered {self.delivered:,}, "
            f"dead-lettered {self.dead_lettered:,}, filtered {self.filtered:,}, "
            f"skipped {self.skipped:,}; sent {self.events_sent:,} events, skipped "
            f"{self.events_skipped:,} already delivered; {self.attributes_sent:,} attributes "
            f"changed, {self.attributes_skipped:,} unchanged"
            + (
                f"; {self.unguarded:,} records sent in full (user keyed elsewhere)"
                if self.unguarded
                else ""
            )
        )


def replay_consumer(kafka: KafkaSettings, topics: TopicSettings) -> AIOKafkaConsumer:
    """A consumer with no group: reads without committing and without joining anything."""
    return AIOKafkaConsumer(
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=topics.topic_max_message_bytes + 65_536,
        **client_kwargs(kafka, "replay"),
    )


async def read_range(
    consumer: AIOKafkaConsumer, plan: Plan, on_record: Callable[[SourceRecord], Any]
) -> None:
    """Read every record of the plan once, in order per partition."""
    wanted = [TopicPartition(plan.topic, p) for p, s in plan.starts.items() if plan.ends[p] > s]
    consumer.assign(wanted)
    for tp in wanted:
        consumer.seek(tp, plan.starts[tp.partition])
    remaining = set(wanted)
    while remaining:
        batch = await consumer.getmany(*remaining, timeout_ms=500, max_records=2_000)
        for tp, records in batch.items():
            for record in records:
                if record.offset < plan.ends[tp.partition]:
                    await _maybe_await(on_record(SourceRecord.consumed(tp, record)))
            if await consumer.position(tp) >= plan.ends[tp.partition]:
                remaining.discard(tp)


async def _maybe_await(value: Any) -> None:
    if asyncio.iscoroutine(value):
        await value


async def dry_run(
    consumer: AIOKafkaConsumer,
    plan: Plan,
    mapping: Mapping,
    selection: Selection,
    out: IO[str],
) -> Tally:
    """Map the range and write each record's Braze objects as a JSON line; send nothing."""
    tally = Tally()

    def on_record(record: SourceRecord) -> None:
        tally.read += 1
        line = _dry_line(record, mapping, selection, tally)
        if line is not None:
            out.write(line + "\n")

    await read_range(consumer, plan, on_record)
    return tally


def _dry_line(
    record: SourceRecord, mapping: Mapping, selection: Selection, tally: Tally
) -> str | None:
    where = {"partition": record.partition, "offset": record.offset}
    if not selection.admits(record):
        tally.skipped += 1
        return None
    try:
        result = map_source(mapping, record)
    except MappingFailure as failure:
        tally.dead_lettered += 1
        return orjson.dumps({**where, "error": failure.reason, "stage": failure.stage}).decode()
    if isinstance(result, Filtered):
        tally.filtered += 1
        return None
    update = selection.shape(result)
    if update is None:
        tally.skipped += 1
        return None
    tally.delivered += 1
    body: dict[str, Any] = {**where}
    if (attributes := update.attribute_object()) is not None:
        body["attributes"] = [attributes]
    if events := update.event_objects():
        body["events"] = events
    return orjson.dumps(body).decode()


# -- progress ------------------------------------------------------------------------------------


class Progress:
    """A progress bar on a terminal, a plain line every few seconds otherwise."""

    def __init__(self, total: int, stream: IO[str] | None = None, every_s: float = 5.0) -> None:
        self.total = total
        self.stream = stream = stream or sys.stderr
        self.every_s = every_s
        self.started = time.monotonic()
        self._last = 0.0
        self._bar: Any = None
        if stream.isatty():
            self._bar = _rich_bar(total, stream)

    def update(self, done: int) -> None:
        """Show `done` of `total`."""
        if self._bar is not None:
            bar, task = self._bar
            bar.update(task, completed=done)
            return
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._last = now
            self.stream.write(self.describe(done) + "\n")
            self.stream.flush()

    def describe(self, done: int) -> str:
        """A plain line: count, rate and time left."""
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = done / elapsed
        left = (self.total - done) / rate if rate > 0 else float("inf")
        eta = f"{left:.0f} s" if left != float("inf") else "unknown"
        return f"replay: {done}/{self.total} records, {rate:.0f}/s, about {eta} left"

    def close(self) -> None:
        if self._bar is not None:
            self._bar[0].stop()


def _rich_bar(total: int, stream: IO[str]) -> tuple[Any, Any] | None:
    try:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn
    except ImportError:  # pragma: no cover - rich is a dependency; plain lines still work
        return None
    bar = Progress(
        "replay",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(file=stream),
    )
    task = bar.add_task("replay", total=total)
    bar.start()
    return bar, task


def positions_done(trackers: Trackers, plan: Plan) -> dict[int, int]:
    """Per partition, the offset a resumed replay starts from."""
    return {**plan.starts, **trackers.positions()}


def completed(positions: dict[int, int], plan: Plan) -> int:
    """How many records of the plan lie before the given positions."""
    return sum(
        min(max(positions.get(p, s) - s, 0), plan.ends[p] - s) for p, s in plan.starts.items()
    )


# -- delivery ------------------------------------------------------------------------------------


async def deliver(
    consumer: AIOKafkaConsumer,
    plan: Plan,
    mapping: Mapping,
    selection: Selection,
    kafka: KafkaSettings,
    topics: TopicSettings,
    settings: WorkerSettings,
    rate_share: float,
    stop: asyncio.Event | None = None,
    *,
    resend: bool = False,
) -> Tally:
    """Deliver the plan through the worker's pipeline: its batching, budget and response table.

    Stops cleanly on Ctrl-C (or `stop`) and prints the `--from-offsets` that resumes the replay.
    Replaying the dead-letter topic settles each record delivered with a marker record. The
    delivery state leaves out what Braze has already, unless `resend`; either way what Braze
    accepts is recorded in it.
    """
    from connector.signals import stop_on_signals

    stop = stop or stop_on_signals()
    config = WorkerConfig(kafka, topics, settings)
    origin, settled = None, None
    if plan.topic == topics.dlq_topic:
        settled = await _settled(plan, kafka, topics)
        async with Cluster(kafka) as cluster:
            raw_partitions = len(await cluster.partitions(topics.raw_topic))
        origin = Origin(topics.raw_topic, raw_partitions)
    route = _route(plan, selection, settled, origin, resend)
    share = min(rate_share, 1.0)
    async with delivering(config, consumer, mapping, plan.topic, share, route) as (line, dlq):
        await dlq.wait_connected(30)
        return await _drive(line, plan, stop)


async def _settled(plan: Plan, kafka: KafkaSettings, topics: TopicSettings) -> set[tuple[int, int]]:
    """The dead letters of the plan's range a redrive settled already."""
    from connector.dlq import Listing

    records: list[SourceRecord] = []
    listing_consumer = replay_consumer(kafka, topics)
    await start_consumer(listing_consumer, kafka)
    try:
        await read_range(listing_consumer, plan, records.append)
    finally:
        await listing_consumer.stop()
    return Listing.of(records).settled


def _route(
    plan: Plan,
    selection: Selection,
    settled: set[tuple[int, int]] | None,
    origin: Origin | None,
    resend: bool,
) -> Callable[[Publisher], Route]:
    """A replay's route: the plan's records the selection admits, nothing committed; for a
    redrive (`settled` known), open dead letters only, each settled by a marker once delivered,
    their delivery state kept where they came from (`origin`)."""
    from connector.dlq import MARKER_HEADER, marker_headers

    def admit(record: SourceRecord) -> bool:
        if record.offset >= plan.ends.get(record.partition, 0):
            return False
        if settled is not None and (
            record.header(MARKER_HEADER) or (record.partition, record.offset) in settled
        ):
            return False
        return selection.admits(record)

    def route(dlq: Publisher) -> Route:
        async def settle(delivered: list[SourceRecord]) -> None:
            for record in delivered:
                await dlq.publish(None, b"", marker_headers(record), 30)

        after = settle if settled is not None else None
        admission = Admission(admit, selection.shape)
        return Route(admission, commits=False, after=after, resend=resend, origin=origin)

    return route


async def _drive(line: Pipeline, plan: Plan, stop: asyncio.Event) -> Tally:
    consumer = line.consumer
    wanted = [TopicPartition(plan.topic, p) for p, s in plan.starts.items() if plan.ends[p] > s]
    consumer.assign(wanted)
    for tp in wanted:
        consumer.seek(tp, plan.starts[tp.partition])
    progress = Progress(plan.total)
    backpressure = line.intake.backpressure

    async def done() -> bool:
        for tp in wanted:
            if (
                tp not in backpressure.exhausted
                and await consumer.position(tp) >= plan.ends[tp.partition]
            ):
                backpressure.exhaust(tp)
        progress.update(completed(positions_done(line.trackers, plan), plan))
        return len(backpressure.exhausted) == len(wanted) and line.idle

    try:
        counts = await line.run(stop, done)
    finally:
        progress.close()
    positions = positions_done(line.trackers, plan)
    if stop.is_set():
        print(
            f"replay interrupted; resume with --from-offsets {plan.resume_argument(positions)}",
            file=sys.stderr,
        )
    return Tally(**asdict(counts), read=completed(positions, plan), positions=positions)
