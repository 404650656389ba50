"""Per-workspace rate limits with Braze's headers, and the busiest window a client produced.

Braze counts requests per workspace in fixed windows and reports them on every answer as
`X-RateLimit-Limit`, `X-RateLimit-Remaining` and `X-RateLimit-Reset`, the last in UTC epoch
seconds; over the budget it answers 429 (https://www.braze.com/docs/api/api_limits).
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from typing import NamedTuple

Clock = Callable[[], float]


class Verdict(NamedTuple):
    """Whether one request fits the budget, and what the headers say about the window."""

    allowed: bool
    limit: int
    remaining: int
    reset_epoch_s: int

    def headers(self) -> dict[str, str]:
        """The three rate-limit headers of an answer."""
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_epoch_s),
        }


class WindowLimiter:
    """A budget of `limit` requests per fixed window of `window_s` seconds, aligned on the epoch."""

    def __init__(self, limit: int, window_s: float, clock: Clock = time.time) -> None:
        self.limit = limit
        self.window_s = window_s
        self.clock = clock
        self.reset()

    def reset(self) -> None:
        """Start afresh, as if no request had been seen."""
        self._window = -1
        self._used = 0

    def take(self) -> Verdict:
        """Count one request and say whether it is within the budget."""
        window = self._roll()
        allowed = self._used < self.limit
        if allowed:
            self._used += 1
        return self._verdict(allowed, window)

    def peek(self) -> Verdict:
        """The current state, without counting a request (for answers outside the budget)."""
        return self._verdict(True, self._roll())

    def _roll(self) -> int:
        window = int(self.clock() // self.window_s)
        if window != self._window:
            self._window, self._used = window, 0
        return window

    def _verdict(self, allowed: bool, window: int) -> Verdict:
        reset = math.ceil((window + 1) * self.window_s)
        return Verdict(allowed, self.limit, self.limit - self._used, reset)


class WindowPeak:
    """The most events seen within any `window_s` seconds, over a sliding window.

    The peak is stricter than the fixed windows Braze enforces: a client that fills the end of
    one window and the start of the next shows up here, which is what a budget test wants.
    """

    def __init__(self, window_s: float = 3.0, clock: Clock = time.monotonic) -> None:
        self.window_s = window_s
        self.clock = clock
        self.reset()

    def reset(self) -> None:
        """Forget everything seen."""
        self._times: deque[float] = deque()
        self.peak = 0

    def add(self) -> None:
        """Note one event now."""
        now = self.clock()
        times = self._times
        times.append(now)
        horizon = now - self.window_s
        while times[0] <= horizon:
            times.popleft()
        if len(times) > self.peak:
            self.peak = len(times)
