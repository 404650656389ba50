"""The pipeline: fetch -> map -> queue -> dispatch -> deliver -> dead-letter -> commit.

Its parts are joined here: intake (`connector.intake`), the dispatcher (`connector.dispatch`)
and delivery (`connector.delivery`). The live worker and replay both run one; a `Route` says
what differs between them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from connector.batching import Limits, UserQueue
from connector.braze import AdaptiveLimiter, BrazeClient
from connector.braze_state import Halt, Outage
from connector.config import WorkerSettings
from connector.deadletter import DeadLetters
from connector.delivery import Delivery, Settle
from connector.dispatch import Dispatcher, Inflow
from connector.intake import EVERYTHING, Admission, Intake
from connector.mapping import Mapping
from connector.metrics import WorkerMetrics
from connector.offsets import Trackers
from connector.outcomes import Counts, Outcomes
from connector.pipeline_state import Origin, PipelineState, StateParts

log = logging.getLogger(__name__)

DRAIN_POLL_S = 0.05


@dataclass(frozen=True)
class Route:
    """What a pipeline does besides delivering: which records it takes (`selection`), whether
    it commits their offsets (`commits`; a replay reads without a group), what follows the
    delivery of records (`after`; a redrive settles each dead letter it delivered), and whether
    the delivery state leaves out what Braze has already (`resend`: no, send everything, and
    still record what Braze accepts)."""

    selection: Admission = EVERYTHING
    commits: bool = True
    after: Settle | None = None
    resend: bool = False
    origin: Origin | None = None


LIVE = Route()


class Pipeline:
    """One consumer's records on their way to Braze; `run()` until stopped or done.

    With the delivery state (`state`), a record is sent only for what Braze does not have yet,
    and its offset is committed only once Kafka has the state of what Braze accepted.
    """

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
        route: Route = LIVE,
        state: StateParts | None = None,
    ) -> None:
        self.consumer = consumer
        self.limiter = limiter
        self.settings = settings
        self.metrics = metrics
        self.topic = topic
        self.route = route
        self.trackers = Trackers()
        self.outcomes = Outcomes(metrics, dead_letters)
        self.state = None if state is None else self._state(state)
        self.queue = UserQueue(screen=None if self.state is None else self.state.screen)
        self.halt = Halt(metrics.halted)
        self.outage = Outage(settings.worker_outage_warn_s, metrics.braze_outage)
        limits = Limits(settings.braze_max_objects, settings.braze_legacy_object_limit)
        self.delivery = Delivery(
            client,
            limiter,
            self.trackers,
            self.outcomes,
            settings,
            metrics,
            halt=self.halt,
            outage=self.outage,
            after=route.after,
            state=self.state,
        )
        inflow = Inflow()
        self.dispatcher = Dispatcher(
            self.queue,
            limiter,
            limits,
            self.delivery,
            inflow,
            metrics,
            window_ms=settings.worker_batch_window_ms,
            max_in_flight=settings.worker_max_requests_in_flight,
        )
        self.intake = Intake(
            consumer,
            mapping,
            route.selection,
            self.trackers,
            self.queue,
            self.outcomes,
            inflow,
            self.dispatcher.wake,
            self.halt,
            settings.worker_max_pending_records,
            ready=None if self.state is None else self.state.ready,
        )

    def _state(self, parts: StateParts) -> PipelineState:
        count = self._partitions_of_topic
        return PipelineState(parts, self.outcomes, self.metrics, count, self.route.origin)

    def _partitions_of_topic(self) -> int:
        """The raw topic's partition count, as the consumer's metadata knows it (0: unknown)."""
        return len(self.consumer.partitions_for_topic(self.topic) or ())

    @property
    def counts(self) -> Counts:
        """What became of the records taken so far."""
        return self.outcomes.counts

    @property
    def idle(self) -> bool:
        """Nothing fetched is waiting, in flight or unfinished."""
        return not self.dispatcher.tasks and not self.queue and self.trackers.pending() == 0

    async def run(self, stop: asyncio.Event, done: Callable[[], Awaitable[bool]]) -> Counts:
        """Fetch until `stop` is set or `done()` (asked before each fetch) says so; then drain
        within the grace period, commit, and say what became of the records."""
        dispatcher = asyncio.create_task(self.dispatcher.forever(), name="dispatch")
        try:
            while not stop.is_set():
                self.outage.check(len(self.dispatcher.tasks), self.trackers.pending())
                if await done():
                    break
                await unless_stopped(self.intake.fetch_once(), stop)
            if stop.is_set():
                log.info("stopping: draining in-flight requests")
            await self.stop()
        finally:
            dispatcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await dispatcher
        return self.counts

    async def commit(self, partitions: Iterable[int] | None = None) -> None:
        """Commit the finished prefix of each (or the given) partition, if the route commits."""
        offsets = self.trackers.to_commit(partitions)
        if not offsets or not self.route.commits:
            return
        try:
            await self.consumer.commit(
                {TopicPartition(self.topic, partition): at for partition, at in offsets.items()}
            )
        except (CommitFailedError, IllegalStateError, KafkaError) as exc:
            log.warning("commit failed; records will be redelivered", extra={"error": str(exc)})
            return
        self.trackers.committed(offsets)

    async def drain(self, partitions: set[int] | None, timeout_s: float) -> None:
        """Wait for in-flight work (of some partitions) to finish, then commit it."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.trackers.busy(partitions):
            self.dispatcher.dispatch(flush=True)
            await asyncio.sleep(DRAIN_POLL_S)
        await self.commit(partitions)

    async def revoked(self, partitions: set[int]) -> None:
        """Finish what can be finished of revoked partitions, commit it, forget the rest."""
        # Queued records are left to the partitions' next owner; requests in flight may finish.
        self.trackers.dropped = self.queue.drop(partitions)
        try:
            await self.drain(partitions, self.settings.worker_drain_timeout_s)
            await self._commit_answered(partitions)  # before the partitions move on
        finally:
            self.trackers.dropped = {}
        self.trackers.forget(partitions)
        if self.state is not None:  # after the drain, whose answers it took
            self.state.revoked(partitions)
        # After the trackers: update_lag() reports only partitions that have one.
        self.metrics.forget_partitions(partitions)

    def assigned(self, partitions: Iterable[int] = ()) -> None:
        """Recompute this worker's share of the Braze budget from its partitions; start
        restoring the delivery state of the `partitions` newly assigned."""
        if self.state is not None:
            self.state.assigned(partitions)
        self.intake.backpressure.assigned()
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

    def check_ready(self, stopping: bool) -> str | None:
        """Say why /readyz should answer 503 (None when ready); outgrow_worker_ready follows."""
        reason = self._not_ready_reason(stopping)
        self.metrics.ready.set(0 if reason else 1)
        return reason

    def _not_ready_reason(self, stopping: bool) -> str | None:
        if self.halt.active:
            return f"Braze refuses the configuration (HTTP {self.halt.status})"
        if (silent := self.outage.reason()) is not None:
            return silent
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
        if self.state is not None:
            self.state.count_users()

    async def stop(self) -> None:
        """Drain everything within the grace period, commit, and cancel what is left; what
        Braze answered by then is recorded (within another grace period) and committed."""
        await self.drain(None, self.settings.worker_drain_timeout_s)
        await self.dispatcher.stop()
        await self._commit_answered(None)

    async def _commit_answered(self, partitions: set[int] | None) -> None:
        """Past a drain's deadline: wait (another grace period) for what Braze answered by
        then to be recorded, and commit it."""
        if self.trackers.busy(partitions):
            await self.delivery.settled(self.settings.worker_drain_timeout_s)
            await self.commit(partitions)

    async def close(self) -> None:
        """Stop what runs besides requests: the delivery state's restores and writes."""
        if self.state is not None:
            await self.state.close()


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
