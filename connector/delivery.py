"""Delivery: send a request until Braze settles it, then settle each of its records.

Braze's answer decides (`connector.braze.RESPONSE_TABLE`): accepted (objects it names go to the
dead-letter topic), refused whole (halve the request to find the bad objects), the configuration
refused (halt and probe), or no answer and throttling (back off and send again).

What Braze accepted of partitions still owned is confirmed to the delivery state (`Confirm`)
before the records are finished, so that no offset is committed before the state it covers is
in Kafka. A request sent again (a retry, a half of a split) leaves out the objects of
partitions revoked meanwhile: their next owner sends them.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol

from aiokafka import TopicPartition

from connector.batching import Item, TrackRequest
from connector.braze import Action, AdaptiveLimiter, Answer, BrazeClient
from connector.braze_state import Halt, Outage
from connector.config import WorkerSettings
from connector.deadletter import Reason, SourceRecord
from connector.metrics import WorkerMetrics
from connector.offsets import Trackers
from connector.outcomes import Outcomes

Key = tuple[int, int]  # (partition, offset) of the topic read
Failures = dict[Key, Reason]  # records of a request Braze refused, and why
Settle = Callable[[list[SourceRecord]], Awaitable[None]]  # after Braze applied records


class Confirm(Protocol):
    """Where what Braze accepted goes before its records are finished (the delivery state)."""

    async def confirm(self, items: list[Item]) -> None:
        """Record the items as Braze accepted them; return once Kafka has the state records."""


class Delivery:
    """Sends requests to Braze and settles their records: delivered, dead-lettered, or retried."""

    def __init__(
        self,
        client: BrazeClient,
        limiter: AdaptiveLimiter,
        trackers: Trackers,
        outcomes: Outcomes,
        settings: WorkerSettings,
        metrics: WorkerMetrics,
        *,
        halt: Halt,
        outage: Outage,
        after: Settle | None = None,
        state: Confirm | None = None,
    ) -> None:
        self.client = client
        self.limiter = limiter
        self.trackers = trackers
        self.outcomes = outcomes
        self.settings = settings
        self.metrics = metrics
        self.halt = halt
        self.outage = outage
        self.after = after
        self.state = state
        self.max_objects = settings.braze_max_objects
        self.settling: set[asyncio.Task[None]] = set()  # answered requests being recorded

    async def deliver(self, request: TrackRequest) -> None:
        """Send the request (its slot of the budget taken already) and settle its records.

        Once Braze answered, settling runs to its end even if the delivery is cancelled (a
        stop's deadline): what Braze applied is recorded (dead letters, the delivery state),
        or the next owner of the partition would send it again. `settled()` waits for it.
        """
        failures: Failures = {}
        dropped: set[Key] = set()
        await self._send(request, failures, dropped, acquired=True)
        settle = asyncio.ensure_future(self._settle(request, failures, dropped))
        self.settling.add(settle)
        settle.add_done_callback(self.settling.discard)
        await asyncio.shield(settle)

    async def settled(self, timeout_s: float) -> None:
        """Wait (at most `timeout_s`) for the requests Braze answered to be recorded."""
        if self.settling:
            await asyncio.wait(set(self.settling), timeout=timeout_s)

    async def _settle(self, request: TrackRequest, failures: Failures, dropped: set[Key]) -> None:
        delivered = request.records
        if failures:
            failed = [
                (source(item), failures[(item.partition, item.offset)])
                for item in self._owned(request.records)
                if (item.partition, item.offset) in failures
            ]
            await self.outcomes.dead_letter(failed)
        if failures or dropped:
            left_out = failures.keys() | dropped
            delivered = [i for i in delivered if (i.partition, i.offset) not in left_out]
        if self.state is not None:
            await self.state.confirm(self._owned(delivered))
        if self.after is not None:
            await self.after([source(item) for item in self._owned(delivered)])
        self.outcomes.delivered(delivered)
        finish(request.records)

    async def oversized(self, items: list[Item]) -> None:
        """Dead-letter records that alone map to more objects than a request may carry."""
        reason = Reason("map", f"one record maps to more than {self.max_objects} objects")
        await self.outcomes.dead_letter([(source(item), reason) for item in self._owned(items)])
        finish(items)

    def _owned(self, items: list[Item]) -> list[Item]:
        """The items of partitions still held (not revoked since they were taken)."""
        owns = self.trackers.owns
        return [item for item in items if owns(item.partition, item.owner)]

    def _still_owned(self, request: TrackRequest, dropped: set[Key]) -> TrackRequest:
        """The request without the objects of partitions no longer owned; note their records."""
        owns = self.trackers.owns
        kept = request.keeping(lambda item: owns(item.partition, item.owner))
        if kept is not request:
            sent = {(item.partition, item.offset) for item in kept.records}
            left_out = ((item.partition, item.offset) for item in request.records)
            dropped.update(key for key in left_out if key not in sent)
        return kept

    async def _send(
        self, request: TrackRequest, failures: Failures, dropped: set[Key], *, acquired: bool
    ) -> None:
        """Send until Braze settles the request; its first slot of the budget is `acquired`
        already (by the dispatcher) or not (a half of a split request). Sent again, it leaves
        out partitions revoked meanwhile (`dropped`), and goes no more once nothing is left."""
        first, attempt, body = acquired, 0, request.encoded()
        while True:
            if attempt or not first:  # after an answer: the drain deadline may have passed
                owned = self._still_owned(request, dropped)
                if not owned.records:
                    return
                if owned is not request:
                    request, body = owned, owned.encoded()
            if not acquired:
                self.metrics.limiter_wait.observe(await self.limiter.acquire())
            acquired = False
            self.metrics.rate.set(self.limiter.requests_per_s)
            started = time.perf_counter()
            answer = await self.client.track(body)
            self.metrics.braze_seconds.observe(time.perf_counter() - started)
            self.metrics.requests.labels(str(answer.status)).inc()
            self.outage.answered(answer)
            if answer.action is Action.DONE:
                self._accepted(request, answer, failures)
                return
            if answer.action is Action.SPLIT:
                await self._split(request, answer, failures, dropped)
                return
            attempt += 1
            await self._wait_before_retry(answer, attempt)

    def _accepted(self, request: TrackRequest, answer: Answer, failures: Failures) -> None:
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
                failures[(item.partition, item.offset)] = why

    async def _split(
        self, request: TrackRequest, answer: Answer, failures: Failures, dropped: set[Key]
    ) -> None:
        self.halt.leave()
        if request.size <= 1:
            why = Reason("braze", answer.message or "refused", answer.status, answer.message)
            for item in request.items():
                failures[(item.partition, item.offset)] = why
            return
        left, right = request.split()
        await self._send(left, failures, dropped, acquired=False)
        await self._send(right, failures, dropped, acquired=False)

    async def _wait_before_retry(self, answer: Answer, attempt: int) -> None:
        self.metrics.retries.inc()
        if answer.action is Action.HALT:
            self.halt.enter(answer)
            await asyncio.sleep(self.settings.worker_halt_probe_s * random.uniform(0.8, 1.2))
            return
        if answer.status == 429:
            self.metrics.throttled.inc()
            self.limiter.throttled(answer.retry_after_s)
        cap = self.settings.worker_retry_max_backoff_s
        backoff = random.uniform(0, min(cap, 0.2 * 2**attempt))  # full jitter
        await asyncio.sleep(max(backoff, answer.retry_after_s or 0.0))


def source(item: Item) -> SourceRecord:
    """The consumed record behind an item, as the dead-letter topic keeps it."""
    record = item.record
    return SourceRecord.consumed(TopicPartition(record.topic, item.partition), record)


def finish(items: Iterable[Item]) -> None:
    """Note the items' records done; a revoked partition's tracker takes it, unread."""
    for item in items:
        item.owner.finish(item.offset)
