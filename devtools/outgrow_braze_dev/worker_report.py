"""What the worker benchmark measures, how it judges it, and how it prints it.

Figures come from two readings of the sandbox's counters and the worker's CPU time, one at the
first Braze request and one at the drain or the time limit; each scenario has its targets, judged
on the medians of its runs.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from connector.braze import RateBudget
from outgrow_braze_dev.backlog import PARTITIONS

TRACK_PATH = "/users/track"


# --------------------------------------------------------------------------- scenarios


@dataclass(frozen=True)
class Target:
    """One figure's goal: at least `minimum` or at most `maximum`."""

    label: str
    name: str
    minimum: float | None = None
    maximum: float | None = None

    def met(self, value: float | None) -> bool:
        """Whether a measured value reaches the goal (an unknown one does not)."""
        if value is None:
            return False
        if self.minimum is not None and value < self.minimum:
            return False
        return self.maximum is None or value <= self.maximum

    def describe(self) -> str:
        """The goal in words, e.g. `events/s >= 15000`."""
        if self.minimum is not None:
            return f"{self.label} >= {self.minimum:g}"
        return f"{self.label} <= {self.maximum:g}"


PACKED = Target("objects/request", "objects_per_request", minimum=74)
MEMORY = Target("peak RSS MB", "peak_rss_mb", maximum=200)
TARGETS: dict[str, tuple[Target, ...]] = {
    "open": (
        Target("events/s", "events_per_s", minimum=20_000),
        Target("CPU ms per 1,000 events", "cpu_ms_per_1000", maximum=50),
        PACKED,
        MEMORY,
    ),
    "binding": (
        Target("budget utilisation", "utilisation", minimum=0.95),
        Target("429 answers", "throttled", maximum=0),
        PACKED,
        MEMORY,
    ),
}
SCENARIOS = tuple(TARGETS)


@dataclass(frozen=True)
class Scenario:
    """A budget shared by the sandbox and the worker, and what the run should reach under it."""

    name: str
    budget: RateBudget
    budget_text: str

    @classmethod
    def named(cls, name: str, budget_text: str) -> Scenario:
        """Build a scenario; a budget unlike `3000/3s` is a ConfigError."""
        return cls(name, RateBudget.parse(budget_text), budget_text)

    @property
    def budget_per_s(self) -> float:
        """Requests a second the budget allows."""
        return self.budget.requests / self.budget.period_s

    @property
    def targets(self) -> tuple[Target, ...]:
        """The goals of this scenario."""
        return TARGETS[self.name]


# --------------------------------------------------------------------------- measuring


@dataclass(frozen=True)
class Counters:
    """What the sandbox had counted, and the worker's CPU time, at one moment."""

    at_s: float
    requests: dict[str, int]
    objects: dict[str, int]
    peak_3s: int = 0
    cpu_s: float | None = None
    sandbox_cpu_s: float | None = None

    @classmethod
    def from_stats(
        cls, stats: dict[str, Any], at_s: float, cpu_s: float | None, sandbox_cpu_s: float | None
    ) -> Counters:
        """Read the `/_sandbox/stats` answer."""
        requests = {k: int(v) for k, v in stats.get("requests", {}).get(TRACK_PATH, {}).items()}
        objects = {k: int(v) for k, v in stats.get("objects_processed", {}).items()}
        peak = int(stats.get("max_track_requests_in_3s", 0))
        return cls(at_s, requests, objects, peak, cpu_s, sandbox_cpu_s)

    @property
    def sent(self) -> int:
        """Track requests answered, whatever the status."""
        return sum(self.requests.values())

    @property
    def events(self) -> int:
        """Event objects Braze applied: one per delivered lead."""
        return self.objects.get("events", 0)


def _delta(after: float | None, before: float | None) -> float | None:
    return None if after is None or before is None else after - before


@dataclass(frozen=True)
class RunFigures:
    """One run, measured from the first Braze request to the drain or the time limit."""

    seconds: float
    events: int
    requests: int
    accepted: int
    objects: int
    throttled: int
    budget_per_s: float
    drained: bool
    startup_s: float
    peak_3s: int
    cpu_s: float | None
    sandbox_cpu_s: float | None = None
    cpu_total_s: float | None = None
    statuses: dict[str, int] = field(default_factory=dict)
    peak_rss_mb: float | None = None  # the worker's VmHWM, start to exit (drain included)

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    @property
    def objects_per_request(self) -> float:
        """Mean objects per request Braze applied."""
        return self.objects / self.accepted if self.accepted else 0.0

    @property
    def utilisation(self) -> float:
        """Requests sent over the requests the budget allowed in the window."""
        allowed = self.budget_per_s * self.seconds
        return self.requests / allowed if allowed > 0 else 0.0

    @property
    def cpu_ms_per_1000(self) -> float | None:
        """Worker CPU milliseconds per 1,000 events delivered."""
        if self.cpu_s is None or not self.events:
            return None
        return self.cpu_s * 1e6 / self.events

    @property
    def sandbox_core_share(self) -> float | None:
        """How busy the sandbox's core was: a value near 1 means the sandbox set the pace."""
        if self.sandbox_cpu_s is None or self.seconds <= 0:
            return None
        return self.sandbox_cpu_s / self.seconds

    def value(self, name: str) -> float | None:
        """A figure by name, as the targets and the medians ask for it."""
        found: float | int | None = getattr(self, name)
        return None if found is None else float(found)

    def as_dict(self) -> dict[str, Any]:
        """Raw counts and derived figures, JSON-ready."""
        derived = {name: self.value(name) for name in FIGURES}
        return {**asdict(self), **derived}


FIGURES = (
    "events_per_s",
    "requests_per_s",
    "objects_per_request",
    "utilisation",
    "throttled",
    "cpu_ms_per_1000",
    "sandbox_core_share",
    "peak_rss_mb",
)


def measure(
    first: Counters, last: Counters, budget_per_s: float, *, drained: bool, startup_s: float
) -> RunFigures:
    """The figures of the window between two readings."""
    statuses = {
        status: count - first.requests.get(status, 0)
        for status, count in last.requests.items()
        if count - first.requests.get(status, 0)
    }
    return RunFigures(
        seconds=last.at_s - first.at_s,
        events=last.events - first.events,
        requests=last.sent - first.sent,
        accepted=statuses.get("201", 0),
        objects=sum(last.objects.values()) - sum(first.objects.values()),
        throttled=statuses.get("429", 0),
        budget_per_s=budget_per_s,
        drained=drained,
        startup_s=startup_s,
        peak_3s=last.peak_3s,
        cpu_s=_delta(last.cpu_s, first.cpu_s),
        sandbox_cpu_s=_delta(last.sandbox_cpu_s, first.sandbox_cpu_s),
        statuses=statuses,
    )


@dataclass(frozen=True)
class Accounting:
    """Where a run left the backlog: read back after the worker stopped."""

    backlog: int
    committed: int
    delivered_events: int
    dead_letters: int
    drained: bool

    def problems(self) -> list[str]:
        """Lost or misplaced events, one line each; empty when every event is accounted for."""
        found = []
        if self.delivered_events < self.committed:
            found.append(
                f"EVENTS LOST: {self.committed:,} records committed, but Braze received only "
                f"{self.delivered_events:,} events"
            )
        if self.drained and self.committed < self.backlog:
            found.append(
                f"OFFSETS SHORT: the backlog was delivered, but the group committed only "
                f"{self.committed:,} of {self.backlog:,} records"
            )
        if self.dead_letters:
            found.append(f"{self.dead_letters:,} records went to the dead-letter topic")
        return found


@dataclass
class ScenarioReport:
    """The runs of one scenario."""

    scenario: Scenario
    runs: list[RunFigures] = field(default_factory=list)
    accounts: list[Accounting] = field(default_factory=list)

    def median(self, name: str) -> float | None:
        """The median of one figure over the runs (None when no run knows it)."""
        known = [v for v in (run.value(name) for run in self.runs) if v is not None]
        return float(statistics.median(known)) if known else None

    def verdicts(self) -> list[tuple[Target, float | None, bool]]:
        """Each target with the median it is judged on."""
        return [(t, self.median(t.name), t.met(self.median(t.name))) for t in self.scenario.targets]

    def problems(self) -> list[str]:
        """Accounting problems of every run, labelled."""
        label = self.scenario.name
        return [
            f"{label} run {number}: {problem}"
            for number, account in enumerate(self.accounts, 1)
            for problem in account.problems()
        ]

    def as_dict(self) -> dict[str, Any]:
        """The scenario as JSON-ready values."""
        return {
            "scenario": self.scenario.name,
            "budget": self.scenario.budget_text,
            "runs": [run.as_dict() for run in self.runs],
            "accounting": [asdict(account) for account in self.accounts],
            "median": {name: self.median(name) for name in FIGURES},
            "targets": [
                {"target": t.describe(), "median": value, "met": met}
                for t, value, met in self.verdicts()
            ],
        }


@dataclass
class WorkerBenchReport:
    """Everything one `bench worker` invocation measured."""

    events: int
    users: int
    max_seconds: float
    latency_ms: float
    in_flight: int
    cpus: str
    scenarios: list[ScenarioReport] = field(default_factory=list)
    fill_s: float = 0.0

    def problems(self) -> list[str]:
        """Every lost event, over all scenarios."""
        return [problem for report in self.scenarios for problem in report.problems()]

    def as_dict(self) -> dict[str, Any]:
        """The summary printed by --json."""
        return {
            "target": "worker",
            "events": self.events,
            "users": self.users,
            "partitions": PARTITIONS,
            "max_seconds": self.max_seconds,
            "latency_ms": self.latency_ms,
            "in_flight": self.in_flight,
            "cpus": self.cpus,
            "fill_s": round(self.fill_s, 1),
            "cpu_measured_from": "/proc/PID/stat of the worker process, first request to end",
            "scenarios": [report.as_dict() for report in self.scenarios],
            "ok": not self.problems(),
        }


# --------------------------------------------------------------------------- formatting


def format_number(value: float | None, digits: int = 1) -> str:
    """A figure with thousands separators, or n/a."""
    return "n/a" if value is None else f"{value:,.{digits}f}"


def _whole(value: float | None) -> str:
    return format_number(value, 0)


def _two(value: float | None) -> str:
    return format_number(value, 2)


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.1f}%"


# (heading, figure, width, how it is written)
COLUMNS: tuple[tuple[str, str, int, Callable[[float | None], str]], ...] = (
    ("events/s", "events_per_s", 10, _whole),
    ("req/s", "requests_per_s", 8, format_number),
    ("obj/req", "objects_per_request", 9, _two),
    ("budget", "utilisation", 8, _percent),
    ("429s", "throttled", 6, _whole),
    ("CPU ms/1k ev", "cpu_ms_per_1000", 14, format_number),
    ("sandbox core", "sandbox_core_share", 14, _percent),
    ("peak RSS MB", "peak_rss_mb", 13, _whole),
)
HEADER = f"{'run':<8}{'seconds':>8}" + "".join(f"{h:>{w}}" for h, _, w, _ in COLUMNS) + "  end"


def _row(label: str, figures: dict[str, float | None], seconds: str, end: str) -> str:
    cells = "".join(f"{write(figures[name]):>{width}}" for _, name, width, write in COLUMNS)
    return f"{label:<8}{seconds:>8}{cells}  {end}".rstrip()


def format_scenario(report: ScenarioReport) -> list[str]:
    """The table of one scenario: each run, the medians, the targets."""
    lines = [f"scenario {report.scenario.name}: budget {report.scenario.budget_text}", HEADER]
    for number, run in enumerate(report.runs, 1):
        end = "drained" if run.drained else "time limit"
        figures = {name: run.value(name) for name in FIGURES}
        lines.append(_row(str(number), figures, f"{run.seconds:.1f}", end))
    medians = {name: report.median(name) for name in FIGURES}
    lines.append(_row("median", medians, "", ""))
    for target, value, met in report.verdicts():
        lines.append(f"  target {target.describe()}: {_two(value)} {'met' if met else 'MISSED'}")
    for number, account in enumerate(report.accounts, 1):
        verdict = "OK" if not account.problems() else "FAILED"
        lines.append(
            f"  run {number}: committed {account.committed:,} of {account.backlog:,} records, "
            f"Braze received {account.delivered_events:,} events, "
            f"{account.dead_letters} dead letters: {verdict}"
        )
    return lines


def format_report(report: WorkerBenchReport) -> str:
    """The human-readable summary."""
    lines = [
        f"bench worker: 1 worker process, {report.events:,} leads over {report.users:,} people "
        f"in {PARTITIONS} partitions, Braze sandbox with +{report.latency_ms:g} ms latency",
        f"{report.cpus}; {report.in_flight} requests in flight; each run at most "
        f"{report.max_seconds:g} s from the first request, or until drained; medians of "
        f"{max((len(s.runs) for s in report.scenarios), default=0)} runs",
        "CPU: the worker's user+system time from /proc over the measured window; peak RSS: "
        "the worker's VmHWM from /proc, start to exit",
    ]
    for scenario in report.scenarios:
        lines += ["", *format_scenario(scenario)]
    return "\n".join(lines)
