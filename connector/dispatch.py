"""The dispatcher: queued records become requests when the budget and the slots have room."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from connector.batching import Item, Limits, TrackRequest, UserQueue
from connector.braze import AdaptiveLimiter
from connector.metrics import WorkerMetrics


class Sender(Protocol):
    """What becomes of the requests the dispatcher packs (see `connector.delivery`)."""

    async def deliver(self, request: TrackRequest) -> None:
        """Send the request until Braze settles it, and settle its records."""

    async def oversized(self, items: list[Item]) -> None:
        """Settle records no request can hold."""


@dataclass
class Inflow:
    """What intake tells the dispatcher of records on their way to the queue."""

    mapping: bool = False  # a fetched batch is being mapped
    more_coming: bool = False  # the last fetch was full: the next one is expected to be too


class Timer:
    """Call back once at the earliest of the times asked for (time.monotonic() times)."""

    def __init__(self, callback: Callable[[], None]) -> None:
        self.callback = callback
        self.handle: asyncio.TimerHandle | None = None
        self.due = 0.0  # uvloop's handles cannot say when they are due

    def at(self, when: float) -> None:
        """Call back at `when`, unless a call is due sooner already."""
        if self.handle is not None:
            if self.due <= when:
                return
            self.handle.cancel()
        self.due = when
        delay = max(when - time.monotonic(), 0.0)
        self.handle = asyncio.get_running_loop().call_later(delay, self._fire)

    def cancel(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None

    def _fire(self) -> None:
        self.handle = None
        self.callback()


class BudgetWait:
    """How long requests waited for a slot of the budget, since it last ran out."""

    def __init__(self, metrics: WorkerMetrics) -> None:
        self.metrics = metrics
        self.since: float | None = None

    def starved(self) -> None:
        """The budget has no slot for a request now."""
        if self.since is None:
            self.since = time.monotonic()

    def started(self, requests: int) -> None:
        """Requests took their slots: observe how long they waited for them (or not)."""
        waited = 0.0
        if self.since is not None:
            waited, self.since = time.monotonic() - self.since, None
        for _ in range(requests):
            self.metrics.limiter_wait.observe(waited)


class Dispatcher:
    """Packs queued records into requests whenever there is a slot to send one.

    A request takes its slot of the budget before it is packed, so that every request in flight
    is being sent: under a binding budget records wait in the queue, which a revoke drops at
    once, rather than in requests a revoke would wait for.
    """

    def __init__(
        self,
        queue: UserQueue,
        limiter: AdaptiveLimiter,
        limits: Limits,
        sender: Sender,
        inflow: Inflow,
        metrics: WorkerMetrics,
        *,
        window_ms: int,
        max_in_flight: int,
    ) -> None:
        self.queue = queue
        self.limiter = limiter
        self.limits = limits
        self.sender = sender
        self.inflow = inflow
        self.window_s = window_ms / 1000
        self.max_in_flight = max_in_flight
        self.tasks: set[asyncio.Task[None]] = set()  # requests in flight, oversized records
        self.wake = asyncio.Event()
        self.timer = Timer(self.dispatch)  # for a request kept back, or a slot of the budget
        self.budget_wait = BudgetWait(metrics)

    async def forever(self) -> None:
        """Dispatch whenever woken: records were queued, or a request finished."""
        while True:
            await self.wake.wait()
            self.wake.clear()
            if self.window_s and len(self.queue) < self.limits.max_objects:
                await asyncio.sleep(self.window_s)
            self.dispatch()

    def dispatch(self, *, flush: bool = False) -> None:
        """Start as many requests as free slots allow; the rest stay queued in order.

        A last request with room left goes once its oldest record has waited the batch window
        (at once with `flush`): under a backlog more records come meanwhile and fill it.
        """
        room = self.max_in_flight - len(self.tasks)
        if room <= 0 or not self.queue:
            return
        free = min(room, self.limiter.free_now())
        if free == 0:
            self.budget_wait.starved()
            self._when_budget_frees()
            return
        packed = self.queue.take(free, self.limits, wait_s=0.0 if flush else self._hold_s())
        if packed.held_until is not None and math.isfinite(packed.held_until):
            self.timer.at(packed.held_until)
        if packed.requests:
            self.limiter.take_now(len(packed.requests))
            self.budget_wait.started(len(packed.requests))
            if len(packed.requests) == free < room and self.queue:
                self._when_budget_frees()  # it ran out with records left
        for request in packed.requests:
            self._start(self._deliver(request))
        if packed.oversized:
            self._start(self.sender.oversized(packed.oversized))

    def _hold_s(self) -> float:
        """How long a last request with room left may wait for its oldest record's sake."""
        if self.inflow.mapping or (self.inflow.more_coming and self.tasks):
            # A fetched batch is being mapped, or (under a backlog) the next is being fetched
            # while requests are in flight: their records, or the users those requests free, may
            # fill the request, and the batch's end or a request's wakes the dispatcher again.
            return math.inf
        return self.window_s

    def _when_budget_frees(self) -> None:
        """Dispatch again when the budget may have a slot for a request."""
        self.timer.at(time.monotonic() + self.limiter.seconds_to_free())

    def _start(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _deliver(self, request: TrackRequest) -> None:
        try:
            await self.sender.deliver(request)
        finally:
            self.queue.release(request.users)
            # Free the slot before waking the dispatcher, which counts slots by live tasks.
            self.tasks.discard(asyncio.current_task())  # type: ignore[arg-type, unused-ignore]
            self.wake.set()

    async def stop(self) -> None:
        """Dispatch nothing more; cancel what is still in flight."""
        self.timer.cancel()
        for task in list(self.tasks):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*self.tasks, return_exceptions=True)
