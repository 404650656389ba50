"""The Braze client's response table, rate signals and budget-shaped limiter."""

from __future__ import annotations

import asyncio
import time

import pytest

from connector.braze import (
    Action,
    AdaptiveLimiter,
    BrazeClient,
    RateBudget,
    action_for,
    retry_after,
)
from connector.errors import ConfigError


@pytest.mark.parametrize(
    ("status", "action"),
    [
        (201, Action.DONE),
        (200, Action.DONE),
        (400, Action.SPLIT),
        (413, Action.SPLIT),
        (401, Action.HALT),
        (403, Action.HALT),
        (404, Action.HALT),
        (415, Action.HALT),
        (429, Action.RETRY),
        (500, Action.RETRY),
        (502, Action.RETRY),
        (503, Action.RETRY),
        (504, Action.RETRY),
        (0, Action.RETRY),
        (408, Action.RETRY),
        (422, Action.HALT),
        (302, Action.HALT),
    ],
)
def test_response_table(status: int, action: Action) -> None:
    assert action_for(status) is action


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"X-Ratelimit-Retry-After": "7"}, 7.0),
        ({"Retry-After": "2"}, 2.0),
        ({"X-RateLimit-Reset": "1000000030"}, 30.0),
        ({"X-RateLimit-Reset": "12"}, 12.0),
        ({"X-RateLimit-Reset": "soon"}, None),
        ({"X-Ratelimit-Retry-After": "later"}, None),
        ({}, None),
    ],
)
def test_retry_after_reads_braze_headers(headers: dict[str, str], seconds: float | None) -> None:
    assert retry_after(headers, now=1_000_000_000.0) == seconds


def test_reset_in_the_past_means_no_wait() -> None:
    assert retry_after({"X-RateLimit-Reset": "1000000000"}, now=1_000_000_100.0) == 0.0


@pytest.mark.parametrize(
    ("text", "requests", "period"),
    [("3000/3s", 3000, 3.0), ("250/1m", 250, 60.0), ("100/500ms", 100, 0.5), ("60/m", 60, 60.0)],
)
def test_rate_budget_parses(text: str, requests: int, period: float) -> None:
    assert RateBudget.parse(text) == RateBudget(requests, period)


@pytest.mark.parametrize("text", ["3000", "0/3s", "3000/3d", "fast", "10/0s"])
def test_rate_budget_refuses_nonsense(text: str) -> None:
    with pytest.raises(ConfigError, match="rate"):
        RateBudget.parse(text)


def test_limiter_rate_follows_share_and_throttling() -> None:
    limiter = AdaptiveLimiter(RateBudget(3000, 0.001), share=0.5)
    assert limiter.requests_per_s == pytest.approx(1_500_000)
    limiter.throttled(2.0)
    limiter.throttled(2.0)  # the same pause: cut once
    assert limiter.requests_per_s == pytest.approx(750_000)
    assert limiter.paused_until > time.monotonic() + 1.5
    limiter.paused_until = 0.0
    for _ in range(4):
        limiter._changed_at = 0.0  # as if a tenth of the period has passed
        limiter.succeeded()
    assert limiter.requests_per_s == pytest.approx(1_500_000 * 0.7)
    for _ in range(100):
        limiter._changed_at = 0.0
        limiter.succeeded()
    assert limiter.requests_per_s == pytest.approx(1_500_000)
    limiter.set_share(0.25)
    assert limiter.requests_per_s == pytest.approx(750_000)


def test_throttling_never_goes_below_the_floor() -> None:
    limiter = AdaptiveLimiter(RateBudget(100, 1.0))
    for _ in range(20):
        limiter.throttled(0)
        limiter.paused_until = 0.0
    assert limiter.requests_per_s == pytest.approx(5)


async def test_no_window_of_the_period_exceeds_the_budget() -> None:
    """An upper bound: a slow machine only lowers the counts, so this cannot flake that way."""
    budget = RateBudget(40, 0.5)
    limiter = AdaptiveLimiter(budget)
    stamps: list[float] = []
    deadline = time.monotonic() + 1.6

    async def client() -> None:
        while time.monotonic() < deadline:
            await limiter.acquire()
            stamps.append(time.monotonic())

    await asyncio.gather(*(client() for _ in range(20)))
    busiest = max(
        sum(1 for t in stamps if start <= t < start + budget.period_s) for start in stamps
    )
    assert busiest <= budget.requests
    assert len(stamps) >= budget.requests  # it did let work through


async def test_slots_taken_at_once_count_against_the_bucket() -> None:
    limiter = AdaptiveLimiter(RateBudget(1_000, 10.0))  # a bucket of 40, 9.6 a second drip
    assert limiter.free_now() == 40
    limiter.take_now(40)
    assert limiter.free_now() == 0
    assert limiter.seconds_to_free() == pytest.approx(1 / 96, rel=0.2)
    await asyncio.sleep(limiter.seconds_to_free() + 0.001)
    assert limiter.free_now() >= 1  # a slow machine sleeps longer: more may have dripped


async def test_no_slot_at_once_during_a_pause_or_while_a_retry_waits() -> None:
    limiter = AdaptiveLimiter(RateBudget(1_000, 1.0))
    limiter.throttled(0.2)
    assert limiter.free_now() == 0
    assert limiter.seconds_to_free() == pytest.approx(0.2, abs=0.05)
    limiter.paused_until = 0.0
    free = limiter.free_now()
    limiter.take_now(free)
    waiting = asyncio.ensure_future(limiter.acquire())
    await asyncio.sleep(0)  # it waits in the bucket, first in line
    assert not waiting.done()
    assert limiter.free_now() == 0
    await asyncio.wait_for(waiting, 1.0)
    await asyncio.sleep(0.01)  # the retry went; new slots follow as the bucket drips
    assert limiter.free_now() >= 1


def test_client_refuses_an_endpoint_it_cannot_post_to() -> None:
    with pytest.raises(ConfigError, match="must start with http:// or https://"):
        BrazeClient("rest.iad-01.braze.com", "key", timeout_s=1, connections=1)
