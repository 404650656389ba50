"""The dispatcher alone: a half-full last request waits for the batch window, then goes.

No broker or sandbox: the Braze client is a stand-in, so that this runs under uvloop too, as the
`worker` command does (uvloop's timer handles differ from asyncio's).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
import uvloop

from connector.batching import Item
from connector.braze import Action, AdaptiveLimiter, Answer, RateBudget
from connector.config import WorkerSettings, load
from connector.mapping import BrazeUpdate, load_mapping
from connector.metrics import WorkerMetrics
from connector.worker import Worker


class Braze:
    """Accepts every request and remembers its size."""

    def __init__(self) -> None:
        self.sizes: list[int] = []

    async def track(self, body: dict[str, Any]) -> Answer:
        self.sizes.append(sum(len(body.get(array, [])) for array in ("attributes", "events")))
        return Answer(201, Action.DONE, "success")


def worker(braze: Braze, window_ms: int) -> Worker:
    settings = load(WorkerSettings, {"worker_batch_window_ms": window_ms})
    limiter = AdaptiveLimiter(RateBudget(1_000_000, 1.0))
    return Worker(
        None,  # type: ignore[arg-type]  # the dispatcher never touches the consumer
        braze,  # type: ignore[arg-type]
        limiter,
        None,  # type: ignore[arg-type]  # nothing is dead-lettered here
        load_mapping(),
        settings,
        WorkerMetrics(),
        "raw",
    )


def add(line: Worker, offset: int, user: str) -> None:
    update = BrazeUpdate(f"external_id:{user}", {"external_id": user}, {"score": offset})
    line.queue.add(Item(0, offset, update))


async def _held_then_sent() -> tuple[list[int], list[int]]:
    braze = Braze()
    line = worker(braze, window_ms=100)
    for offset in range(10):
        add(line, offset, f"u{offset}")
    line.dispatch()
    line.dispatch()  # a second hold while the first timer is pending
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
    line.dispatch(flush=True)
    await asyncio.sleep(0.05)
    return braze.sizes


def test_flush_sends_at_once() -> None:
    assert asyncio.run(_flushed()) == [1]
