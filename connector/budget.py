"""A token bucket whose size and rate change in place while requests wait in it.

aiolimiter (1.3) cannot serve here through its public API: its rate is copied at construction
into a private field, so a new `max_rate` or `time_period` is ignored; `has_capacity()` answers
yes or no for one amount, not how many acquisitions would pass; nothing says whether someone
waits; capacity cannot be taken without an `await`. The worker needs all four, and reaching into
its private `_level`, `_leak` and `_waiters` breaks with its next release. So the bucket is ours,
and small.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable

# A timer may fire a hair early (uvloop counts in milliseconds); that is not a missing token.
_SLACK = 1e-9


def window_shape(per_window: float, period_s: float, burst_fraction: float) -> tuple[float, float]:
    """(size, refill per second) of a bucket that lets at most `per_window` through in any
    window of `period_s`.

    A bucket passes its size at once and then its refill: a full bucket plus a whole period of
    refill would pass twice the budget in one window. So it holds only `burst_fraction` of the
    budget and refills the rest over the period: size + refill x period = per_window.
    """
    per_window = max(per_window, 1.0)
    size = max(per_window * burst_fraction, 1.0)
    refill_per_s = (per_window - size) / period_s
    if refill_per_s <= 0:  # a budget of one request: the token comes back a period later
        return 1.0, 1.0 / period_s
    return size, refill_per_s


class TokenBucket:
    """Up to `size` tokens, refilled at `rate_per_s`; each acquisition takes one.

    Invariant (at a fixed shape): the tokens taken in any span of t seconds are at most
    size + rate_per_s x t. Waiters in `acquire()` are served first come, first served, and
    before anyone who asks `free_now()`.
    """

    def __init__(
        self, size: float, rate_per_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.size = size
        self.rate_per_s = rate_per_s
        self._clock = clock
        self._used = 0.0  # tokens taken and not yet refilled; above `size` after a shrink
        self._at = clock()
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._timer: asyncio.TimerHandle | None = None

    def reshape(self, size: float, rate_per_s: float) -> None:
        """Refill for the time passed at the old rate, then go on at the new one."""
        self._refill()
        self.size, self.rate_per_s = size, rate_per_s
        if self._waiters:
            self._serve()

    def free_now(self) -> int:
        """Tokens to be had without waiting: none while an `acquire()` waits."""
        if self._waiting():
            return 0
        self._refill()
        return max(math.floor(self.size - self._used + _SLACK), 0)

    def take_now(self, tokens: int) -> None:
        """Take tokens that `free_now()` offered, before any await."""
        self._refill()
        self._used += tokens

    def seconds_to_free(self) -> float:
        """How long until one more token is there, as far as the tokens taken tell."""
        self._refill()
        return max((self._used + 1 - self.size) / self.rate_per_s, 0.0)

    async def acquire(self) -> None:
        """Take one token, waiting behind earlier waiters for it to be refilled."""
        if not self._waiting() and self.free_now() >= 1:
            self._used += 1
            return
        turn = asyncio.get_running_loop().create_future()
        self._waiters.append(turn)
        self._serve()
        # Cancelled, it is skipped when its turn comes; each waiter wants one token, so the
        # timer set for the one before it stays right.
        await turn

    def _waiting(self) -> bool:
        waiters = self._waiters
        while waiters and waiters[0].done():
            waiters.popleft()
        return bool(waiters)

    def _serve(self) -> None:
        """Hand tokens to waiters in order; set a timer for when the next one is due."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._refill()
        waiters = self._waiters
        while self._waiting():
            if self._used + 1 > self.size + _SLACK:
                delay = (self._used + 1 - self.size) / self.rate_per_s
                self._timer = asyncio.get_running_loop().call_later(delay, self._serve)
                return
            self._used += 1
            waiters.popleft().set_result(None)

    def _refill(self) -> None:
        now = self._clock()
        self._used = max(self._used - (now - self._at) * self.rate_per_s, 0.0)
        self._at = now
