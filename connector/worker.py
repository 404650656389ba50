"""The delivery worker: fetch -> map -> batch -> send -> dead-letter -> commit."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from connector.batching import Item, Limits, TrackRequest, UserQueue
from connector.braze import Action, AdaptiveLimiter, Answer, BrazeClient, RateBudget
from connector.config import KafkaSettings, TopicSettings, WorkerSettings
from connector.deadletter import DeadLetters, Reason, SourceRecord
from connector.kafka_security import client_kwargs, start_consumer
from connector.mapping import BrazeUpdate, Filtered, Mapping, MappingFailure, map_record
from connector.metrics import WorkerMetrics, observe_all
from connector.offsets import PartitionOffsets
from connector.payloads import JSON
from connector.producer import Publisher
from connector.runtime import WORKER_YOUNG_OBJECTS, tune_gc
from connector.signals import stop_on_signals

log = logging.getLogger(__name__)

Key = tuple[int, int]  # (partition, offset) of the raw topic
YIELD_EVERY = 100  # records mapped between two turns of the event loop
FETCH_RECORDS = 2_000  # records a fetch returns at most


@dataclass
class Halt:
    """Braze refuses the configuration (key, permission, endpoint): consumption stops."""

    active: bool = False
    since: float = 0.0
    status: int = 0

    def enter(self, answer: Answer) -> None:
        if not self.active:
            log.error(
                "braze refuses the configuration; consumption stopped until it accepts again",
                extra={"status": answer.status, "braze_message": answer.message},
            )
        self.active, self.since, self.status = True, time.monotonic(), answer.status

    def leave(self) -> None:
        if self.active:
            log.warning("braze accepts the configuration again; consumption resumed")
        self.active = False


@dataclass
class Delivery:
    """The outcome of one request, object by object."""

    failures: dict[Key, Reason] = field(default_factory=dict)


class Worker:
    """One member of the consumer group; `run()` until the stop event is set."""

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        client: BrazeClient,
        limiter: AdaptiveLimiter,
        dead_letters: DeadLetters,
        mapping: Mapping,
        settings: WorkerSettings,
        metrics: WorkerMetrics,
        topic: str,
    ) -> None:
        self.consumer = consumer
        self.client = client
        self.limiter = limiter
        self.dead_letters = dead_letters
        self.mapping = mapping
        self.settings = settings
        self.metrics = metrics
        self.topic = topic
        self.limits = Limits(settings.braze_max_objects, settings.braze_legacy_object_limit)
        self.halt = Halt()
        self.trackers: dict[int, PartitionOffsets] = {}
        self.dropped: dict[int, int] = {}  # queued records of partitions being revoked
        self.queue = UserQueue()
        self.hold_timer: asyncio.TimerHandle | None = None  # for a request kept back, or a slot
        self.hold_until = 0.0  # when it is due (time.monotonic()): uvloop's handles cannot say
        self.starved_since: float | None = None  # when the budget last had no slot for a request
        self.tasks: set[asyncio.Task[None]] = set()
        self.wake = asyncio.Event()
        self.paused = False
        # Hooks for replays; the live worker keeps these defaults.
        self.admit: Callable[[SourceRecord], bool] = _always
        self.shape: Callable[[BrazeUpdate], BrazeUpdate | None] = _unchanged
        self.on_delivered: Callable[[list[SourceRecord]], Awaitable[None]] | None = None
        self.commits = True
        self.exhausted: set[TopicPartition] = set()  # read to their end: never resumed
        self.skipped = 0
        self.taking = False  # while a fetched batch is being mapped
        self.more_coming = False  # the last fetch was full: the next one is expected to be too
        self.mapped = 0  # records of the batch being taken that were queued, counted at its end

    # -- intake ---------------------------------------------------------------------------

    async def fetch_once(self) -> None:
        """Fetch a batch, or pause intake while too much is pending or Braze refuses us."""
        self._apply_backpressure()
        batch = await self.consumer.getmany(timeout_ms=200, max_records=FETCH_RECORDS)
        self.taking = True
        try:
            taken = await self._take_all(batch)
        finally:
            self.taking = False
        # A full batch says Kafka has more: the next fetch is expected to bring records too.
        held_for_more, self.more_coming = self.more_coming, taken == FETCH_RECORDS
        if taken:
            self.metrics.consumed.inc(taken)
        if taken or held_for_more:
            self.wake.set()
        if self.mapped:
            self.metrics.mapped.inc(self.mapped)
            self.mapped = 0

    async def _take_all(
        self, batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]
    ) -> int:
        """Take every record of the batch; return how many there were."""
        taken = 0
        for tp, records in batch.items():
            for start in range(0, len(records), YIELD_EVERY):
                failed = self._take_some(tp, records[start : start + YIELD_EVERY])
                if failed:
                    tracker = self.trackers[tp.partition]  # nothing awaited since the take
                    await self._dead_letter_while_not_taking(failed)
                    for source, _ in failed:
                        tracker.finish(source.offset)  # a revoked one's tracker takes it, unread
                # Mapping a whole batch at once would hold the loop for a large fraction of a
                # second: answers, the limiter's releases and heartbeats would wait.
                await asyncio.sleep(0)
            taken += len(records)
        return taken

    async def _dead_letter_while_not_taking(
        self, failed: list[tuple[SourceRecord, Reason]]
    ) -> None:
        """Write a batch's dead letters; while they wait (on a dead-letter topic Kafka will not
        take, say), nothing is being mapped, so the dispatcher sends what is queued as usual
        rather than keeping its last request back for records still to come."""
        self.taking = False
        self.wake.set()
        try:
            await self._dead_letter(failed)
        finally:
            self.taking = True

    @property
    def idle(self) -> bool:
        """Nothing fetched is waiting, in flight or unfinished."""
        return not self.tasks and not self.queue and self._pending() == 0

    def _pending(self) -> int:
        return sum(tracker.in_flight for tracker in self.trackers.values())

    def _apply_backpressure(self) -> None:
        limit = self.settings.worker_max_pending_records
        should_pause = self.halt.active or self._pending() >= limit
        if should_pause and not self.paused:
            self.consumer.pause(*self.consumer.assignment())
            self.paused = True
        elif self.paused and not self.halt.active and self._pending() < limit * 0.8:
            self.consumer.resume(*(self.consumer.assignment() - self.exhausted))
            self.paused = False

    def _take_some(
        self, tp: TopicPartition, records: list[ConsumerRecord[bytes, bytes]]
    ) -> list[tuple[SourceRecord, Reason]]:
        """Map records of one partition, in offset order, and queue what they give; return
        those that fail, with the reason. The worker's hottest loop: names are bound once."""
        partition = tp.partition
        tracker = self.trackers.get(partition)
        if tracker is None:
            tracker = self.trackers[partition] = PartitionOffsets()
        finish, add, new_item = tracker.finish, self.queue.add, tuple.__new__
        mapping, admit, shape = self.mapping, self.admit, self.shape
        failed = []
        offsets = [record.offset for record in records]
        tracker.track_all(offsets)
        for record, offset in zip(records, offsets, strict=True):
            if admit is not _always and not admit(SourceRecord.consumed(tp, record)):
                self.skipped += 1
                finish(offset)
                continue
            content_type, label, received_at_ms = record_facts(record.headers)
            try:
                value = record.value or b""
                result = map_record(
                    mapping, value, content_type, source=label, received_at_ms=received_at_ms
                )
            except MappingFailure as failure:
                why = Reason(failure.stage, failure.reason)
                failed.append((SourceRecord.consumed(tp, record), why))
                continue
            if type(result) is not BrazeUpdate or result.empty:
                if isinstance(result, Filtered):
                    self.metrics.filtered.labels(result.rule).inc()
                finish(offset)
                continue
            shaped = result if shape is _unchanged else shape(result)
            if shaped is None:
                self.skipped += 1
                finish(offset)
                continue
            self.mapped += 1
            # Item(...) without its generated __new__, a Python call per record.
            add(new_item(Item, (partition, offset, shaped, received_at_ms, record, tracker)))
        return failed

    # -- dispatch ---------------------------------------------------------------------------

    async def dispatch_forever(self) -> None:
        """Coalesce buffered records into requests whenever there is room to send them."""
        window_s = self.settings.worker_batch_window_ms / 1000
        while True:
            await self.wake.wait()
            self.wake.clear()
            if window_s and len(self.queue) < self.limits.max_objects:
                await asyncio.sleep(window_s)
            self.dispatch()

    def dispatch(self, *, flush: bool = False) -> None:
        """Start as many requests as free slots allow; the rest stay queued in order.

        A last request with room left goes once its oldest record has waited the batch window
        (at once with `flush`): under a backlog more records come meanwhile and fill it.
        """
        room = self.settings.worker_max_requests_in_flight - len(self.tasks)
        if room <= 0 or not self.queue:
            return
        # A request takes its slot of the budget before it is packed, so that every request in
        # flight is being sent: under a binding budget records wait in the queue, which a
        # revoke drops at once, rather than in requests a revoke would wait for.
        free = min(room, self.limiter.free_now())
        if free == 0:
            if self.starved_since is None:
                self.starved_since = time.monotonic()
            self._dispatch_when_budget_frees()
            return
        packed = self.queue.take(free, self.limits, wait_s=0.0 if flush else self._hold_s())
        if packed.held_until is not None and math.isfinite(packed.held_until):
            self._dispatch_at(packed.held_until)
        if packed.requests:
            self.limiter.take_now(len(packed.requests))
            self._observe_limiter_wait(len(packed.requests))
            if len(packed.requests) == free < room and self.queue:
                self._dispatch_when_budget_frees()  # it ran out with records left
        for request in packed.requests:
            self._start(request)
        if packed.oversized:
            self._start_dead_letters(packed.oversized)

    def _hold_s(self) -> float:
        """How long a last request with room left may wait for its oldest record's sake."""
        if self.taking or (self.more_coming and self.tasks):
            # A fetched batch is being mapped, or (under a backlog) the next is being fetched
            # while requests are in flight: their records, or the users those requests free, may
            # fill the request, and the batch's end or a request's wakes the dispatcher again.
            return math.inf
        return self.settings.worker_batch_window_ms / 1000

    def _observe_limiter_wait(self, requests: int) -> None:
        """The requests just started waited for the budget since it last ran out, or not."""
        waited = 0.0
        if self.starved_since is not None:
            waited, self.starved_since = time.monotonic() - self.starved_since, None
        for _ in range(requests):
            self.metrics.limiter_wait.observe(waited)

    def _dispatch_when_budget_frees(self) -> None:
        """Dispatch again when the budget may have a slot for a request."""
        self._dispatch_at(time.monotonic() + self.limiter.seconds_to_free())

    def _dispatch_at(self, when: float) -> None:
        """Dispatch again at `when` (a time.monotonic() time), for a request kept back or a
        slot of the budget."""
        if self.hold_timer is not None:
            if self.hold_until <= when:
                return
            self.hold_timer.cancel()
        self.hold_until = when
        delay = max(when - time.monotonic(), 0.0)
        self.hold_timer = asyncio.get_running_loop().call_later(delay, self._held_over)

    def _held_over(self) -> None:
        self.hold_timer = None
        self.dispatch()

    def _start(self, request: TrackRequest) -> None:
        task = asyncio.create_task(self._deliver(request))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _start_dead_letters(self, items: list[Item]) -> None:
        reason = Reason("map", f"one record maps to more than {self.limits.max_objects} objects")
        task = asyncio.create_task(self._fail_items(items, reason))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _fail_items(self, items: list[Item], reason: Reason) -> None:
        await self._dead_letter([(_source(item), reason) for item in self._owned(items)])
        _finish(items)

    # -- delivery ---------------------------------------------------------------------------

    async def _deliver(self, request: TrackRequest) -> None:
        delivery = Delivery()
        try:
            await self._send(request, delivery, acquired=True)
            failures = delivery.failures
            delivered = request.records
            if failures:
                failed = [
                    (_source(item), failures[(item.partition, item.offset)])
                    for item in self._owned(request.records)
                    if (item.partition, item.offset) in failures
                ]
                await self._dead_letter(failed)
                delivered = [i for i in delivered if (i.partition, i.offset) not in failures]
            if self.on_delivered is not None:
                await self.on_delivered([_source(item) for item in self._owned(delivered)])
            self._record_delivered(delivered)
            _finish(request.records)
            if self.halt.active is False:
                self.metrics.halted.set(0)
        finally:
            self.queue.release(request.users)
            # Free the slot before waking the dispatcher, which counts slots by live tasks.
            self.tasks.discard(asyncio.current_task())  # type: ignore[arg-type, unused-ignore]
            self.wake.set()

    async def _send(
        self, request: TrackRequest, delivery: Delivery, *, acquired: bool = False
    ) -> None:
        """Send until Braze settles the request; its first slot of the budget is `acquired`
        already (by the dispatcher) or not (a half of a split request)."""
        attempt, body = 0, request.encoded()
        while True:
            if not acquired:
                self.metrics.limiter_wait.observe(await self.limiter.acquire())
            acquired = False
            self.metrics.rate.set(self.limiter.requests_per_s)
            started = time.perf_counter()
            answer = await self.client.track(body)
            self.metrics.braze_seconds.observe(time.perf_counter() - started)
            self.metrics.requests.labels(str(answer.status)).inc()
            if answer.action is Action.DONE:
                self._accepted(request, answer, delivery)
                return
            if answer.action is Action.SPLIT:
                await self._split(request, answer, delivery)
                return
            attempt += 1
            await self._wait_before_retry(answer, attempt)

    def _accepted(self, request: TrackRequest, answer: Answer, delivery: Delivery) -> None:
        self.halt.leave()
        self.limiter.succeeded()
        self.metrics.objects.observe(request.size)
        for error in answer.errors:
            index = error.get("index")
            array = str(error.get("input_array", ""))
            if not isinstance(index, int):
                continue
            why = Reason("braze", str(error.get("type", "rejected")), answer.status, answer.message)
            for item in request.items_for(array, index):
                delivery.failures[(item.partition, item.offset)] = why

    async def _split(self, request: TrackRequest, answer: Answer, delivery: Delivery) -> None:
        self.halt.leave()
        if request.size <= 1:
            why = Reason("braze", answer.message or "refused", answer.status, answer.message)
            for item in request.items():
                delivery.failures[(item.partition, item.offset)] = why
            return
        left, right = request.split()
        await self._send(left, delivery)
        await self._send(right, delivery)

    async def _wait_before_retry(self, answer: Answer, attempt: int) -> None:
        self.metrics.retries.inc()
        if answer.action is Action.HALT:
            self.halt.enter(answer)
            self.metrics.halted.set(1)
            await asyncio.sleep(self.settings.worker_halt_probe_s * random.uniform(0.8, 1.2))
            return
        if answer.status == 429:
            self.metrics.throttled.inc()
            self.limiter.throttled(answer.retry_after_s)
        cap = self.settings.worker_retry_max_backoff_s
        backoff = random.uniform(0, min(cap, 0.2 * 2**attempt))  # full jitter
        await asyncio.sleep(max(backoff, answer.retry_after_s or 0.0))

    # -- finishing ---------------------------------------------------------------------------

    async def _dead_letter(self, records: list[tuple[SourceRecord, Reason]]) -> None:
        if not records:
            return
        for _, why in records:
            self.metrics.dead_lettered.labels(why.stage).inc()
        await self.dead_letters.send_all(records)

    def _record_delivered(self, items: list[Item]) -> None:
        if items:
            self.metrics.delivered.inc(len(items))
        now_ms = time.time_ns() // 1_000_000
        latencies_s = [
            max(now_ms - item.received_at_ms, 0) / 1000
            for item in items
            if item.received_at_ms is not None
        ]
        observe_all(self.metrics.end_to_end, latencies_s)

    def _owned(self, items: list[Item]) -> list[Item]:
        """The items of partitions this worker still holds (not revoked since they were taken)."""
        trackers = self.trackers
        return [item for item in items if trackers.get(item.partition) is item.owner]

    # -- commits and rebalances -----------------------------------------------------------------

    async def commit(self, partitions: Iterable[int] | None = None) -> None:
        """Commit the finished prefix of each (or the given) partition."""
        chosen = self.trackers if partitions is None else set(partitions) & set(self.trackers)
        offsets = {}
        for partition in chosen:
            offset = self.trackers[partition].to_commit()
            if offset is not None:
                offsets[TopicPartition(self.topic, partition)] = offset
        if not offsets or not self.commits:
            return
        try:
            await self.consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError, KafkaError) as exc:
            log.warning("commit failed; records will be redelivered", extra={"error": str(exc)})
            return
        for tp, offset in offsets.items():
            self.trackers[tp.partition].committed(offset)

    def check_ready(self, stopping: bool) -> str | None:
        """Say why /readyz should answer 503 (None when ready); outgrow_worker_ready follows."""
        reason = self._not_ready_reason(stopping)
        self.metrics.ready.set(0 if reason else 1)
        return reason

    def _not_ready_reason(self, stopping: bool) -> str | None:
        if self.halt.active:
            return f"Braze refuses the configuration (HTTP {self.halt.status})"
        if stopping and not self.consumer.assignment():
            return "stopping"
        return None

    def update_lag(self) -> None:
        """Publish consumer lag per assigned partition."""
        for tp in self.consumer.assignment():
            high = self.consumer.highwater(tp)
            tracker = self.trackers.get(tp.partition)
            position = tracker.safe_offset() if tracker else None
            if high is not None and position is not None:
                self.metrics.lag.labels(str(tp.partition)).set(max(high - position, 0))

    async def drain(self, partitions: set[int] | None, timeout_s: float) -> None:
        """Wait for in-flight work (of some partitions) to finish, then commit it."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self._busy(partitions):
            self.dispatch(flush=True)
            await asyncio.sleep(0.05)
        await self.commit(partitions)

    def _busy(self, partitions: set[int] | None) -> bool:
        """Whether records of the partitions are queued or in flight (dropped ones aside)."""
        dropped = self.dropped
        return any(
            tracker.in_flight > dropped.get(partition, 0)
            for partition, tracker in self.trackers.items()
            if partitions is None or partition in partitions
        )

    async def revoked(self, partitions: set[int]) -> None:
        """Finish what can be finished of revoked partitions, commit it, forget the rest."""
        # Queued records are left to the partitions' next owner; requests in flight may finish.
        self.dropped = self.queue.drop(partitions)
        try:
            await self.drain(partitions, self.settings.worker_drain_timeout_s)
        finally:
            self.dropped = {}
        for partition in partitions:
            self.trackers.pop(partition, None)
        # After the trackers: update_lag() reports only partitions that have one.
        self.metrics.forget_partitions(partitions)

    def assigned(self) -> None:
        """Recompute this worker's share of the Braze budget from its partitions."""
        total = len(self.consumer.partitions_for_topic(self.topic) or ()) or 1
        mine = len(self.consumer.assignment())
        share = self.settings.braze_rate_share * max(mine, 1) / total
        self.limiter.set_share(min(share, self.settings.braze_rate_share))
        self.metrics.rate.set(self.limiter.requests_per_s)
        # The limiter keeps a partition's share while idle; the budget counts only what it owns,
        # so that the workers' budgets add up to the deployment's.
        owned = min(mine / total, 1.0)
        self.metrics.budget.set(self.limiter.budget.per_s * self.settings.braze_rate_share * owned)
        log.info("partitions assigned", extra={"partitions": mine, "of": total})

    async def stop(self) -> None:
        """Drain everything within the grace period, commit, and cancel what is left."""
        await self.drain(None, self.settings.worker_drain_timeout_s)
        if self.hold_timer is not None:  # nothing is dispatched after the drain
            self.hold_timer.cancel()
            self.hold_timer = None
        for task in list(self.tasks):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*self.tasks, return_exceptions=True)


class Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    """Commit on revoke, recompute the budget share on assignment."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.worker.revoked({tp.partition for tp in revoked})

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.worker.paused = False
        self.worker.assigned()


def _source(item: Item) -> SourceRecord:
    """The consumed record behind an item, as the dead-letter topic keeps it."""
    record = item.record
    return SourceRecord.consumed(TopicPartition(record.topic, item.partition), record)


def _finish(items: Iterable[Item]) -> None:
    """Note the items' records done; a revoked partition's tracker takes it, unread."""
    for item in items:
        item.owner.finish(item.offset)


class RawRecord(Protocol):
    """A raw topic's record as a consumer or the dead-letter topic gives it."""

    @property
    def value(self) -> bytes | None: ...

    @property
    def headers(self) -> Sequence[tuple[str, bytes | None]]: ...


def map_source(mapping: Mapping, record: RawRecord) -> BrazeUpdate | Filtered:
    """Map a raw or dead-lettered record with the headers the receiver wrote."""
    content_type, source, received_at_ms = record_facts(record.headers)
    value = record.value or b""
    return map_record(mapping, value, content_type, source=source, received_at_ms=received_at_ms)


def record_facts(headers: Sequence[tuple[str, bytes | None]]) -> tuple[str, str, int | None]:
    """The content type, source label and received-at time (epoch ms) the receiver wrote; the
    first header of each name counts, as `SourceRecord.header()` reads."""
    if len(headers) >= 3:  # the receiver writes these three first, in this order
        (first, mime), (second, at), (third, label) = headers[:3]
        if first == "content-type" and second == "received-at" and third == "source":
            return _text(mime) or JSON, _text(label) or "default", _epoch_ms(at)
    content_type = source = received = None
    for name, value in headers:
        if name == "content-type":
            content_type = value if content_type is None else content_type
        elif name == "source":
            source = value if source is None else source
        elif name == "received-at" and received is None:
            received = value
    return _text(content_type) or JSON, _text(source) or "default", _epoch_ms(received)


def _epoch_ms(value: bytes | None) -> int | None:
    # ASCII digits only (bytes.isdigit), and few enough for int() to take.
    return int(value) if value and len(value) < 20 and value.isdigit() else None


@functools.lru_cache(maxsize=256)
def _text(value: bytes | None) -> str:
    # A topic holds a handful of content types and source labels: each is decoded once.
    return value.decode("utf-8", "replace") if value else ""


def _always(record: SourceRecord) -> bool:
    return True


def _unchanged(update: BrazeUpdate) -> BrazeUpdate | None:
    return update


@dataclass(frozen=True)
class WorkerConfig:
    """Everything the worker service needs, parsed at the edge."""

    kafka: KafkaSettings
    topics: TopicSettings
    worker: WorkerSettings


@contextlib.asynccontextmanager
async def delivering(
    config: WorkerConfig, consumer: AIOKafkaConsumer, mapping: Mapping, topic: str, share: float
) -> AsyncIterator[tuple[Worker, Publisher]]:
    """A worker for `topic` with its Braze client, its share of the budget and the dead-letter
    publisher (yielded too), all closed on the way out; the worker service and replay use it."""
    settings = config.worker
    limiter = AdaptiveLimiter(RateBudget.parse(settings.braze_rate_limit), share=share)
    client = BrazeClient(
        settings.braze_rest_endpoint,
        settings.braze_api_key.get_secret_value(),
        settings.braze_timeout_s,
        settings.worker_max_requests_in_flight,
    )
    max_bytes = config.topics.topic_max_message_bytes
    async with Publisher(config.kafka, config.topics.dlq_topic, max_bytes) as dlq, client:
        dead_letters = DeadLetters(dlq, mapping.version)
        metrics = WorkerMetrics()
        yield (
            Worker(consumer, client, limiter, dead_letters, mapping, settings, metrics, topic),
            dlq,
        )


async def serve(config: WorkerConfig, stop: asyncio.Event | None = None) -> None:
    """Run one worker until SIGTERM/SIGINT (or `stop`): drain, commit, leave the group."""
    from connector.health import health_app, start_health
    from connector.mapping import load_mapping

    settings = config.worker
    mapping = load_mapping(settings.mapping_file)
    tune_gc(WORKER_YOUNG_OBJECTS)
    stop = stop or stop_on_signals()
    consumer = _consumer(config)
    topic = config.topics.raw_topic
    share = settings.braze_rate_share
    async with delivering(config, consumer, mapping, topic, share) as (worker, _):

        async def ready() -> str | None:
            return worker.check_ready(stop.is_set())

        worker.check_ready(stop.is_set())
        runner = await start_health(
            health_app(ready, worker.metrics.render), settings.worker_host, settings.worker_port
        )
        try:
            await _consume(worker, stop, config)
        finally:
            await runner.cleanup()


def _consumer(config: WorkerConfig) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        group_id=config.worker.consumer_group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=config.topics.topic_max_message_bytes + 65_536,
        fetch_max_bytes=64 * 1024 * 1024,
        rebalance_timeout_ms=int(config.worker.worker_drain_timeout_s * 1000) + 10_000,
        **client_kwargs(config.kafka, "worker"),
    )


async def unless_stopped(work: Awaitable[None], stop: asyncio.Event) -> None:
    """Await `work`, cancelling it once `stop` is set first.

    Taking a fetched batch waits for its dead letters, without end while Kafka will not take
    them; SIGTERM must not wait with it. A record whose dead letter was cut short stays
    unfinished, so no commit passes it and the next owner of its partition reads it again.
    """
    task = asyncio.ensure_future(work)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait((task, stopped), return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        if not task.done():
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _consume(worker: Worker, stop: asyncio.Event, config: WorkerConfig) -> None:
    consumer = worker.consumer
    await start_consumer(consumer, config.kafka)
    consumer.subscribe([config.topics.raw_topic], listener=Rebalance(worker))
    dispatcher = asyncio.create_task(worker.dispatch_forever(), name="dispatch")
    last_commit = time.monotonic()
    try:
        while not stop.is_set():
            await unless_stopped(worker.fetch_once(), stop)
            worker.check_ready(stop.is_set())  # kept current for scrapes, not only for probes
            if time.monotonic() - last_commit >= worker.settings.worker_commit_interval_s:
                await worker.commit()
                worker.update_lag()
                last_commit = time.monotonic()
        log.info("stopping: draining in-flight requests")
        await worker.stop()
    finally:
        dispatcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await dispatcher
        await consumer.stop()
    log.info("worker stopped")
