"""Faults the sandbox can inject into its Braze endpoints, set at start-up or at run time.

The statuses mirror Braze's documented failures (https://www.braze.com/docs/api/errors): 5XX
answers to be retried with backoff, and 429 when over the rate limit
(https://www.braze.com/docs/api/api_limits).
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

FAULT_STATUSES = (500, 502, 503, 504)
Clock = Callable[[], float]


class InvalidFaults(ValueError):
    """A fault setting is unknown or out of range."""


@dataclass(frozen=True, slots=True)
class FaultSettings:
    """What to inject. Rates are fractions of requests; windows start when they are set."""

    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    error_rate: float = 0.0
    error_statuses: tuple[int, ...] = FAULT_STATUSES
    drop_rate: float = 0.0
    slow_body_ms: float = 0.0
    storm_s: float = 0.0
    outage_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """The settings as JSON-ready values."""
        values = dataclasses.asdict(self)
        values["error_statuses"] = list(self.error_statuses)
        return values


_RATES = ("error_rate", "drop_rate")
_DURATIONS = ("latency_ms", "jitter_ms", "slow_body_ms", "storm_s", "outage_s")
WINDOWS = ("storm_s", "outage_s")


def parse_faults(document: Any, base: FaultSettings | None = None) -> FaultSettings:
    """Read fault settings from a JSON object, over `base` for the fields it leaves out."""
    if not isinstance(document, Mapping):
        raise InvalidFaults("faults must be a JSON object")
    known = {item.name for item in dataclasses.fields(FaultSettings)}
    unknown = sorted(set(document) - known)
    if unknown:
        raise InvalidFaults(
            f"unknown fault setting {unknown[0]!r}; known: {', '.join(sorted(known))}"
        )
    changes = {name: _value(name, value) for name, value in document.items()}
    return dataclasses.replace(base or FaultSettings(), **changes)


def _value(name: str, value: Any) -> Any:
    if name == "error_statuses":
        return _statuses(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidFaults(f"{name} must be a number")
    if name in _RATES and not 0.0 <= value <= 1.0:
        raise InvalidFaults(f"{name} must be between 0 and 1")
    if value < 0 or value > 86_400 * 1000:
        raise InvalidFaults(f"{name} must be zero or a positive number")
    return float(value)


def _statuses(value: Any) -> tuple[int, ...]:
    if not isinstance(value, list) or not value or any(v not in FAULT_STATUSES for v in value):
        raise InvalidFaults(f"error_statuses must be a non-empty list drawn from {FAULT_STATUSES}")
    return tuple(int(v) for v in value)


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do to one request: an action, a status, a delay and a slow body."""

    action: str = "none"  # none | drop | outage | storm | error
    status: int = 0
    delay_s: float = 0.0
    slow_body_s: float = 0.0
    until_s: float = 0.0  # seconds left in a storm or outage


CALM = Decision()


class Faults:
    """The faults in force; `decide` is asked once per Braze request."""

    def __init__(
        self,
        initial: FaultSettings | None = None,
        clock: Clock = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.initial = initial or FaultSettings()
        self.clock = clock
        self.rng = rng or random.Random()
        self.reset()

    def reset(self) -> None:
        """Return to the start-up faults, their windows starting now."""
        self._apply(self.initial, WINDOWS)

    def clear(self) -> None:
        """Inject nothing from now on."""
        self._apply(FaultSettings(), WINDOWS)

    def configure(self, document: Any) -> None:
        """Change the given settings; a storm or outage given here starts now."""
        settings = parse_faults(document, self.settings)
        self._apply(settings, tuple(name for name in WINDOWS if name in document))

    def _apply(self, settings: FaultSettings, restarted: tuple[str, ...]) -> None:
        now = self.clock()
        self.settings = settings
        if "storm_s" in restarted:
            self._storm_until = now + settings.storm_s
        if "outage_s" in restarted:
            self._outage_until = now + settings.outage_s
        changed = dataclasses.replace(settings, storm_s=0.0, outage_s=0.0)
        self._steady = changed != FaultSettings(error_statuses=settings.error_statuses)

    def describe(self) -> dict[str, Any]:
        """The settings in force, with the seconds left in the storm and outage windows."""
        now = self.clock()
        described = self.settings.as_dict()
        described["storm_left_s"] = round(max(0.0, self._storm_until - now), 3)
        described["outage_left_s"] = round(max(0.0, self._outage_until - now), 3)
        return described

    def decide(self) -> Decision:
        """Draw the fault for one request."""
        now = self.clock()
        if not self._steady and now >= self._storm_until and now >= self._outage_until:
            return CALM
        settings = self.settings
        delay_s = (settings.latency_ms + self.rng.random() * settings.jitter_ms) / 1000.0
        slow_s = settings.slow_body_ms / 1000.0
        action, status, until = self._action(now)
        return Decision(action, status, delay_s, slow_s, until)

    def _action(self, now: float) -> tuple[str, int, float]:
        settings, rng = self.settings, self.rng
        if now < self._outage_until:
            return "outage", 503, self._outage_until - now
        if settings.drop_rate and rng.random() < settings.drop_rate:
            return "drop", 0, 0.0
        if now < self._storm_until:
            return "storm", 429, self._storm_until - now
        if settings.error_rate and rng.random() < settings.error_rate:
            return "error", rng.choice(settings.error_statuses), 0.0
        return "none", 0, 0.0
