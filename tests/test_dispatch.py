"""The dispatcher in a pipeline: a half-full last request waits for the batch window, then goes.

No broker or sandbox: the Braze client is a stand-in, so that this runs under uvloop too, as the
`worker` command does (uvloop's timer handles differ from asyncio's).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import orjson
import pytest
import uvloop

from connector.batching import Item
from connector.braze import Action, AdaptiveLimiter, Answer, RateBudget
from connector.config import WorkerSettings, load
from connector.mapping import BrazeUpdate, load_mapping
from connector.metrics import WorkerMetrics
from connector.offsets import PartitionOffsets
from connector.pipeline import Pipeline, Route


class Braze:
    """Accepts every request and remembers its size; refuses the objects in `refuse`."""

    def __init__(self, refuse: tuple[dict[str, Any], ...] = ()) -> None:
        self.sizes: list[int] = []
        self.refuse = refuse

    async def track(self, encoded: bytes) -> Answer:
        body = orjson.loads(encoded)
        self.sizes.append(sum(len(body.get(array, [])) for array in ("attributes", "events")))
        return Answer(201, Action.DONE, "success", self.refuse)


OPEN = RateBudget(1_000_000, 1.0)  # a budget that never binds here


def worker(
    braze: Braze,
    window_ms: int,
    drain_s: float = 30.0,
    budget: RateBudget = OPEN,
    commits: bool = True,
) -> Pipeline:
    settings = load(
        WorkerSettings, {"worker_batch_window_ms": window_ms, "worker_drain_timeout_s": drain_s}
    )
    limiter = AdaptiveLimiter(budget)
    return Pipeline(
        None,  # the dispatcher never touches the consumer
        braze,  # type: ignore[arg-type]
        limiter,
        None,  # type: ignore[arg-type]  # nothing is dead-lettered here
        load_mapping(),
        settings,
        WorkerMetrics(),
        "raw",
        Route(commits=commits),
    )


def add(line: Pipeline, offset: int, user: str, partition: int = 0) -> PartitionOffsets:
    """Queue a record the way intake does, its offset tracked; return the tracker."""
    tracker = line.trackers.of(partition)
    tracker.track(offset)
    update = BrazeUpdate(f"external_id:{user}", {"external_id": user}, {"score": offset})
    line.queue.add(Item(partition, offset, update, None, None, tracker))
    return tracker


async def _held_then_sent() -> tuple[list[int], list[int]]:
    braze = Braze()
    line = worker(braze, window_ms=100)
    for offset in range(10):
        add(line, offset, f"u{offset}")
    line.dispatcher.dispatch()
    line.dispatcher.dispatch()  # a second hold while the first timer is pending
    held = list(braze.sizes)
    await asyncio.sleep(0.3)
    return held, braze.sizes


@pytest.mark.parametrize("run", [asyncio.run, uvloop.run], ids=["asyncio", "uvloop"])
def test_a_half_full_request_waits_for_the_window_then_goes(
    run: Callable[[Coroutine[Any, Any, tuple[list[int], list[int]]]], Any],
) -> None:
    held, sent = run(_held_then_sent())
    assert held == []
    assert sent == [10]


async def _flushed() -> list[int]:
    braze = Braze()
    line = worker(braze, window_ms=5_000)
    add(line, 0, "u0")
    line.dispatcher.dispatch(flush=True)
    await asyncio.sleep(0.05)
    return braze.sizes


def test_flush_sends_at_once() -> None:
    assert asyncio.run(_flushed()) == [1]


async def _finished_after_reassignment() -> tuple[int, int | None, list[int]]:
    braze = Braze(refuse=({"input_array": "attributes", "index": 0, "type": "bad"},))
    line = worker(braze, window_ms=0, commits=False)
    add(line, 5, "u5")
    line.dispatcher.dispatch(flush=True)  # in flight when the partition is revoked...
    line.trackers.forget([0])  # ...and its drain gave up on it
    again = line.trackers.of(0)  # assigned again: offset 5 is read anew
    again.track(5)
    await asyncio.sleep(0.05)
    return again.in_flight, again.safe_offset(), braze.sizes


def test_a_request_of_a_lost_partition_leaves_its_new_tracker_alone() -> None:
    # The old request's answer neither finishes the record read anew nor dead-letters it
    # (this worker has no dead-letter publisher: using it would fail the delivery).
    in_flight, safe, sizes = asyncio.run(_finished_after_reassignment())
    assert sizes == [1]
    assert (in_flight, safe) == (1, 5)


async def _revoked_with_queued_records(line: Pipeline) -> tuple[int, bool, int]:
    tracker = add(line, 0, "u0", partition=3)
    add(line, 1, "u1", partition=3)
    await asyncio.wait_for(line.revoked({3}), 10)  # TimeoutError if it waits out the drain
    return tracker.in_flight, 3 in line.trackers, len(line.queue)


def test_a_revoke_drops_queued_records_without_waiting_out_the_drain() -> None:
    # Only requests in flight are waited for: the 30 s drain would exceed wait_for's 10 s.
    line = worker(Braze(), window_ms=0, drain_s=30.0, commits=False)
    in_flight, still_tracked, queued = asyncio.run(_revoked_with_queued_records(line))
    assert (in_flight, still_tracked, queued) == (2, False, 0)  # left to the next owner


async def _under_a_binding_budget(line: Pipeline) -> tuple[int, int, list[int], list[int]]:
    for offset in range(400):
        add(line, offset, f"u{offset}")
    line.dispatcher.dispatch()
    started, queued = len(line.dispatcher.tasks), len(line.queue)
    await asyncio.sleep(0)
    first = list(line.delivery.client.sizes)  # type: ignore[attr-defined]
    deadline = asyncio.get_running_loop().time() + 5
    while len(line.queue) or line.dispatcher.tasks:
        assert asyncio.get_running_loop().time() < deadline, "the queue was never sent"
        await asyncio.sleep(0.02)
    return started, queued, first, line.delivery.client.sizes  # type: ignore[attr-defined]


def test_requests_wait_for_the_budget_in_the_queue_not_in_flight() -> None:
    # A bucket of 2 requests, dripping 48 a second: two full requests go at once; the other
    # records stay queued (a revoke drops them at once) and go as full requests as slots free.
    line = worker(Braze(), window_ms=0, budget=RateBudget(50, 1.0))
    started, queued, first, sizes = asyncio.run(_under_a_binding_budget(line))
    assert (started, queued, first) == (2, 250, [75, 75])
    assert sizes == [75, 75, 75, 75, 75, 25]


async def _revoked_under_a_binding_budget(line: Pipeline) -> tuple[int, int]:
    for offset in range(400):
        add(line, offset, f"u{offset}", partition=3)
    line.dispatcher.dispatch()
    await asyncio.wait_for(line.revoked({3}), 10)  # TimeoutError if it waits out the drain
    return len(line.delivery.client.sizes), len(line.queue)  # type: ignore[attr-defined]


def test_a_revoke_under_a_binding_budget_waits_only_for_requests_being_sent() -> None:
    line = worker(Braze(), window_ms=0, drain_s=30.0, budget=RateBudget(3, 60.0), commits=False)
    sent, queued = asyncio.run(_revoked_under_a_binding_budget(line))
    assert (sent, queued) == (1, 0)  # one slot in the budget: one request; the rest dropped


class SlowBraze(Braze):
    """Answers only once `answer` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.answer = asyncio.Event()

    async def track(self, encoded: bytes) -> Answer:
        await self.answer.wait()
        return await super().track(encoded)


async def _held_while_more_is_coming() -> tuple[int, int, int]:
    braze = SlowBraze()
    line = worker(braze, window_ms=10)
    for offset in range(75):  # a full request (an object a user) goes, and waits for Braze
        add(line, offset, f"u{offset}")
    line.dispatcher.dispatch()
    for offset in range(75, 80):
        add(line, offset, f"u{offset}")
    line.dispatcher.inflow.more_coming = True  # the last fetch was full
    line.dispatcher.dispatch()
    await asyncio.sleep(0.05)  # past the window: held while the full request is in flight
    held = len(line.dispatcher.tasks)
    line.dispatcher.inflow.more_coming = False  # the next fetch was not full
    line.dispatcher.dispatch()
    after = len(line.dispatcher.tasks)
    braze.answer.set()
    await asyncio.sleep(0.05)
    return held, after, len(line.queue)


def test_under_a_backlog_a_half_full_request_waits_for_what_requests_in_flight_free() -> None:
    assert asyncio.run(_held_while_more_is_coming()) == (1, 2, 0)
