"""What Braze's answers say about Braze itself: it refuses our configuration, or it is not there.

Delivery tells these of every answer; intake and readiness read them. Each logs once when it
begins and once when it ends, so that a healthy worker stays quiet.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from prometheus_client import Gauge

from connector.braze import Answer

log = logging.getLogger(__name__)

WARN_EVERY_S = 60.0  # one warning line a minute while Braze gives no answer


class Halt:
    """Braze refuses the configuration (key, permission, endpoint): consumption stops."""

    def __init__(self, gauge: Gauge) -> None:
        self.gauge = gauge
        self.active = False
        self.status = 0

    def enter(self, answer: Answer) -> None:
        """Braze refused the configuration: stop taking records until it accepts it."""
        if not self.active:
            log.error(
                "braze refuses the configuration; consumption stopped until it accepts again",
                extra={"status": answer.status, "braze_message": answer.message},
            )
        self.active, self.status = True, answer.status
        self.gauge.set(1)

    def leave(self) -> None:
        """Braze accepted a request again."""
        if self.active:
            log.warning("braze accepts the configuration again; consumption resumed")
        self.active = False
        self.gauge.set(0)


def no_answer(answer: Answer) -> bool:
    """Whether an answer means Braze is not there: no connection, a timeout, or a 5xx."""
    return answer.status == 0 or answer.status >= 500


class Outage:
    """How long Braze has given no answer; past `warn_after_s` it is an outage.

    During an outage `check()` logs one warning line a minute with what waits for Braze, and
    the worker reports not ready; the first answer ends it, with one line saying so.
    """

    def __init__(
        self, warn_after_s: float, gauge: Gauge, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.warn_after_s = warn_after_s
        self.gauge = gauge
        self.clock = clock
        self.since: float | None = None  # the first unanswered request since the last answer
        self.warned_at: float | None = None  # the last warning of this outage

    def answered(self, answer: Answer) -> None:
        """Note one of Braze's answers (or the lack of one)."""
        if no_answer(answer):
            if self.since is None:
                self.since = self.clock()
            return
        if self.since is None:
            return
        if self.warned_at is not None:
            log.warning(
                "braze answers again; delivery resumed",
                extra={"outage_s": round(self.clock() - self.since, 1)},
            )
        self.since = self.warned_at = None
        self.gauge.set(0)

    def ongoing(self) -> bool:
        """Whether Braze has given no answer for longer than `warn_after_s`; the gauge says so
        from the first time this is asked (by the run loop, a probe or a scrape's readiness)."""
        ongoing = self.since is not None and self.clock() - self.since >= self.warn_after_s
        if ongoing:
            self.gauge.set(1)
        return ongoing

    def check(self, requests_waiting: int, records_waiting: int) -> None:
        """During an outage, warn if the last warning is a minute old (or there is none)."""
        if not self.ongoing():
            return
        now = self.clock()
        if self.warned_at is not None and now - self.warned_at < WARN_EVERY_S:
            return
        self.warned_at = now
        log.warning(
            "braze has given no answer; requests wait and are retried",
            extra={
                "unanswered_s": round(now - (self.since or now), 1),
                "requests_waiting": requests_waiting,
                "records_waiting": records_waiting,
            },
        )

    def reason(self) -> str | None:
        """Why the worker is not ready because of Braze's silence, or None."""
        if not self.ongoing():
            return None
        return f"Braze has given no answer for {self.clock() - (self.since or 0.0):.0f} s"
