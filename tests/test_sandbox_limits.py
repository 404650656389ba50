"""Fixed-window budgets with Braze's headers, and the busiest sliding window."""

from __future__ import annotations

from outgrow_braze_dev.sandbox.limits import Verdict, WindowLimiter, WindowPeak


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_budget_counts_down_then_refuses_until_the_next_window() -> None:
    clock = FakeClock(1_800_000_001.5)  # 1.5 s before a 3 s window ends (epoch-aligned)
    limiter = WindowLimiter(2, 3.0, clock)
    first, second, third = limiter.take(), limiter.take(), limiter.take()
    assert first == Verdict(True, 2, 1, 1_800_000_003)
    assert (second.allowed, second.remaining) == (True, 0)
    assert (third.allowed, third.remaining, third.reset_epoch_s) == (False, 0, 1_800_000_003)
    clock.now = 1_800_000_003.0
    assert limiter.take() == Verdict(True, 2, 1, 1_800_000_006)


def test_peek_spends_nothing_and_reset_refills() -> None:
    limiter = WindowLimiter(5, 60.0, FakeClock(1_800_000_010.0))
    limiter.take()
    assert limiter.peek().remaining == 4
    assert limiter.peek().remaining == 4
    limiter.reset()
    assert limiter.peek().remaining == 5


def test_reset_is_in_whole_epoch_seconds_for_fractional_windows() -> None:
    verdict = WindowLimiter(1, 0.4, FakeClock(1_800_000_000.1)).take()
    assert verdict.reset_epoch_s == 1_800_000_001  # window ends at .4, rounded up


def test_headers_carry_the_three_values() -> None:
    assert Verdict(True, 3000, 2999, 1_800_000_003).headers() == {
        "X-RateLimit-Limit": "3000",
        "X-RateLimit-Remaining": "2999",
        "X-RateLimit-Reset": "1800000003",
    }


def test_the_peak_is_the_most_events_in_any_window() -> None:
    clock = FakeClock(100.0)
    peak = WindowPeak(3.0, clock)
    for at in (100.0, 100.5, 101.0, 102.9, 103.0, 103.1, 110.0):
        clock.now = at
        peak.add()
    # 100.5, 101.0, 102.9, 103.0 and 103.1 lie within 3 s of each other; 100.0 does not
    # share a window with 103.0.
    assert peak.peak == 5
    peak.reset()
    assert peak.peak == 0
