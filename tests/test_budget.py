"""The token bucket: no window of the budget's period carries more than its share, on a clock the
test moves; waiters served in order, in real time."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector.budget import TokenBucket, window_shape


class Clock:
    """A clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@given(
    per_window=st.floats(1, 5_000),
    period_s=st.floats(0.01, 60),
    burst_fraction=st.floats(0.001, 1),
    steps=st.lists(st.tuples(st.floats(0, 1.5), st.floats(0, 1)), min_size=1, max_size=200),
)
def test_no_window_of_the_period_carries_more_than_its_share(
    per_window: float,
    period_s: float,
    burst_fraction: float,
    steps: list[tuple[float, float]],
) -> None:
    """Each step moves the clock by a fraction of the period, then takes a fraction of what is
    free (all of it, often: a greedy caller is the hardest case)."""
    clock = Clock()
    bucket = TokenBucket(*window_shape(per_window, period_s, burst_fraction), clock=clock)
    taken: list[tuple[float, int]] = []
    for advance, greed in steps:
        clock.now += advance * period_s
        free = bucket.free_now()
        tokens = free if greed > 0.5 else round(free * greed * 2)
        if tokens:
            bucket.take_now(tokens)
            taken.append((clock.now, tokens))
    for start, _ in taken:
        in_window = sum(n for at, n in taken if start <= at < start + period_s)
        assert in_window <= per_window + 1e-6


@pytest.mark.parametrize(
    ("per_window", "period_s", "fraction", "shape"),
    [
        (3_000, 3.0, 0.04, (120.0, 960.0)),  # a bucket of 120, the other 2,880 over 3 s
        (10, 1.0, 0.04, (1.0, 9.0)),  # never less than one token
        (1, 2.0, 0.04, (1.0, 0.5)),  # one request a window: its token is back a period later
    ],
)
def test_window_shape(
    per_window: float, period_s: float, fraction: float, shape: tuple[float, float]
) -> None:
    assert window_shape(per_window, period_s, fraction) == pytest.approx(shape)


def test_a_new_shape_counts_the_time_before_it_at_the_old_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(10, 1.0, clock=clock)
    bucket.take_now(bucket.free_now())
    clock.now += 2  # two tokens back at 1/s
    bucket.reshape(10, 4.0)
    assert bucket.free_now() == 2
    clock.now += 1  # four more at 4/s
    assert bucket.free_now() == 6
    bucket.reshape(3, 4.0)  # smaller: what was taken still counts
    assert bucket.free_now() == 0
    assert bucket.seconds_to_free() == pytest.approx(0.5)  # 4 taken, 2 of them to refill


def test_a_token_comes_back_when_seconds_to_free_says() -> None:
    clock = Clock()
    bucket = TokenBucket(4, 8.0, clock=clock)
    assert bucket.free_now() == 4
    bucket.take_now(4)
    assert (bucket.free_now(), bucket.seconds_to_free()) == (0, pytest.approx(0.125))
    clock.now += 0.125
    assert (bucket.free_now(), bucket.seconds_to_free()) == (1, 0.0)


async def test_waiters_are_served_in_order_and_before_anyone_asking() -> None:
    bucket = TokenBucket(1, 200.0)
    bucket.take_now(1)
    served: list[int] = []

    async def wait(n: int) -> None:
        await bucket.acquire()
        served.append(n)

    waiters = [asyncio.create_task(wait(n)) for n in range(4)]
    await asyncio.sleep(0)
    assert bucket.free_now() == 0
    await asyncio.wait_for(asyncio.gather(*waiters), 5)
    assert served == [0, 1, 2, 3]


async def test_a_cancelled_waiter_holds_up_no_one() -> None:
    bucket = TokenBucket(1, 100.0)
    bucket.take_now(1)
    first = asyncio.create_task(bucket.acquire())
    second = asyncio.create_task(bucket.acquire())
    await asyncio.sleep(0)
    first.cancel()
    await asyncio.wait_for(second, 5)
    assert first.cancelled()


async def test_a_faster_shape_wakes_a_waiter_at_once() -> None:
    bucket = TokenBucket(1, 0.01)  # the next token in 100 s
    bucket.take_now(1)
    waiting = asyncio.create_task(bucket.acquire())
    await asyncio.sleep(0)
    assert not waiting.done()
    bucket.reshape(1, 1_000.0)
    await asyncio.wait_for(waiting, 5)
