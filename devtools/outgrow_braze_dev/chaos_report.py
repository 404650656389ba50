"""What a fault-test run proves: leads acknowledged, delivered, lost and sent twice; the verdict.

Delivery is read from the sandbox's profiles: each `outgrow_submission` event carries its lead's
id (`lead_id`), so counting events per lead id tells which leads reached Braze and how often.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

from outgrow_braze_dev.sandbox.store import Profile

EVENT = "outgrow_submission"
PER = 10_000


class UncountableEvents(RuntimeError):
    """A profile holds more events than the sandbox keeps, so events per lead cannot be told."""


def events_per_lead(profiles: Iterable[Profile], event: str = EVENT) -> Counter[str]:
    """How many times each lead's event arrived, by lead id."""
    counts: Counter[str] = Counter()
    for profile in profiles:
        seen = [e for e in profile.recent if e.name == event]
        total = profile.events[event].count if event in profile.events else 0
        if len(seen) != total:
            raise UncountableEvents(
                f"a profile received {total} {event} events but the sandbox kept {len(seen)}: "
                "raise SANDBOX_RECENT_EVENTS or spread the leads over more users"
            )
        counts.update(str(e.properties.get("lead_id")) for e in seen)
    return counts


@dataclass(frozen=True)
class Faults:
    """The faults that really happened in a run, counted as they were done."""

    worker_stops: int
    broker_kills: int
    broker_restarts: int
    receiver_kills: int
    receiver_restarts: int
    braze_503s: int
    braze_429s: int
    unclean_exits: int  # a non-zero exit code after SIGTERM, or no exit within the grace period
    exits_on_their_own: int  # found dead when they were to be stopped: crashed


@dataclass(frozen=True)
class RunFigures:
    """One run's outcome."""

    stop_signal: str
    acknowledged: int
    abandoned: int  # posts never acknowledged (not owed to Braze)
    delivered: int  # distinct acknowledged leads whose event reached Braze
    lost: int  # acknowledged, never delivered
    duplicates: int  # events received beyond the first, over all leads
    raw_records: int  # in the raw topic: one per lead, more for posts that were retried
    dead_letters: int
    finished: bool  # delivery finished (everything committed) within the bound
    seconds: float
    faults: Faults

    @property
    def duplicates_per_10k(self) -> float:
        """Duplicate events per 10,000 acknowledged leads."""
        return self.duplicates * PER / self.acknowledged if self.acknowledged else 0.0

    @property
    def duplicates_per_stop(self) -> float:
        """Duplicate events per worker stop."""
        stops = self.faults.worker_stops
        return self.duplicates / stops if stops else 0.0

    def as_json(self) -> dict[str, object]:
        """JSON-ready figures, the derived rates included."""
        return {
            **asdict(self),
            "duplicates_per_10k": round(self.duplicates_per_10k, 2),
            "duplicates_per_stop": round(self.duplicates_per_stop, 2),
        }


@dataclass(frozen=True)
class Observed:
    """What a run saw besides the leads: records and dead letters, whether it finished, faults."""

    raw_records: int
    dead_letters: int
    finished: bool
    seconds: float
    faults: Faults


def figures(
    stop_signal: str,
    acknowledged: set[str],
    abandoned: set[str],
    counts: Counter[str],
    observed: Observed,
) -> RunFigures:
    """The figures of a run from the acknowledged leads and the events per lead."""
    delivered = sum(1 for lead_id in acknowledged if counts[lead_id])
    return RunFigures(
        stop_signal=stop_signal,
        acknowledged=len(acknowledged),
        abandoned=len(abandoned),
        delivered=delivered,
        lost=len(acknowledged) - delivered,
        duplicates=sum(count - 1 for count in counts.values() if count > 1),
        raw_records=observed.raw_records,
        dead_letters=observed.dead_letters,
        finished=observed.finished,
        seconds=observed.seconds,
        faults=observed.faults,
    )


@dataclass(frozen=True)
class Verdict:
    """Whether the runs pass: nothing lost, delivery finished, SIGTERM duplicates in bound."""

    failures: tuple[str, ...]

    @property
    def passed(self) -> bool:
        """True when nothing failed."""
        return not self.failures


def judge(runs: Iterable[RunFigures], max_sigterm_duplicates_per_10k: float | None) -> Verdict:
    """Check every run; the duplicate bound applies to the SIGTERM run (None: not checked)."""
    failures: list[str] = []
    for run in runs:
        if run.lost:
            failures.append(f"{run.stop_signal}: {run.lost} acknowledged leads never delivered")
        if not run.finished:
            failures.append(f"{run.stop_signal}: delivery did not finish within the bound")
        if run.faults.exits_on_their_own:
            failures.append(
                f"{run.stop_signal}: {run.faults.exits_on_their_own} processes exited on their own"
            )
        bound = max_sigterm_duplicates_per_10k
        if run.stop_signal == "SIGTERM" and bound is not None and run.duplicates_per_10k > bound:
            failures.append(
                f"SIGTERM: {run.duplicates_per_10k:.1f} duplicate events per 10,000 leads "
                f"(at most {bound:g} allowed)"
            )
    return Verdict(tuple(failures))


_ROWS: tuple[tuple[str, Callable[[RunFigures], str]], ...] = (
    ("leads acknowledged", lambda r: f"{r.acknowledged:,}"),
    ("posts never acknowledged", lambda r: f"{r.abandoned:,}"),
    ("delivered", lambda r: f"{r.delivered:,}"),
    ("lost", lambda r: f"{r.lost:,}"),
    ("records in the raw topic", lambda r: f"{r.raw_records:,}"),
    ("dead letters", lambda r: f"{r.dead_letters:,}"),
    ("duplicate events", lambda r: f"{r.duplicates:,}"),
    ("  per 10,000 leads", lambda r: f"{r.duplicates_per_10k:.1f}"),
    ("  per worker stop", lambda r: f"{r.duplicates_per_stop:.2f}"),
    ("worker stops", lambda r: f"{r.faults.worker_stops}"),
    ("broker kills / restarts", lambda r: f"{r.faults.broker_kills} / {r.faults.broker_restarts}"),
    (
        "receiver kills / restarts",
        lambda r: f"{r.faults.receiver_kills} / {r.faults.receiver_restarts}",
    ),
    ("Braze 503s / 429s", lambda r: f"{r.faults.braze_503s:,} / {r.faults.braze_429s:,}"),
    ("unclean exits / crashes", lambda r: _exits(r.faults)),
    ("delivery finished", lambda r: "yes" if r.finished else "NO"),
    ("seconds", lambda r: f"{r.seconds:.0f}"),
)


def _exits(faults: Faults) -> str:
    return f"{faults.unclean_exits} / {faults.exits_on_their_own}"


def format_table(runs: list[RunFigures], verdict: Verdict) -> str:
    """The runs side by side, then the verdict."""
    width = max(len(label) for label, _ in _ROWS)
    lines = [f"{'':{width}}  " + "  ".join(f"{run.stop_signal:>12}" for run in runs)]
    for label, cell in _ROWS:
        lines.append(f"{label:{width}}  " + "  ".join(f"{cell(run):>12}" for run in runs))
    lines.append("")
    lines += [f"FAILED: {failure}" for failure in verdict.failures] or ["passed"]
    return "\n".join(lines)


def format_json(setting: str, runs: list[RunFigures], verdict: Verdict) -> str:
    """The runs and the verdict as one JSON document."""
    document = {
        "setting": setting,
        "runs": [run.as_json() for run in runs],
        "passed": verdict.passed,
        "failures": list(verdict.failures),
    }
    return json.dumps(document, indent=2)
