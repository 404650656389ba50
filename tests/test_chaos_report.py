"""The fault test's figures: events per lead read from the sandbox, losses, duplicates, verdict."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter, deque
from datetime import UTC, datetime

import pytest

from outgrow_braze_dev.chaos_report import (
    EVENT,
    Faults,
    Observed,
    RunFigures,
    UncountableEvents,
    events_per_lead,
    figures,
    format_json,
    format_table,
    judge,
)
from outgrow_braze_dev.sandbox.store import Occurrences, Profile, RecordedEvent

NOW = datetime(2026, 12, 8, tzinfo=UTC)
FAULTS = Faults(4, 1, 1, 1, 1, 95, 1, 0, 0)


def profile(*lead_ids: str, counted: int | None = None) -> Profile:
    recent = deque(RecordedEvent(EVENT, NOW, {"lead_id": lead_id}) for lead_id in lead_ids)
    recent.append(RecordedEvent("other_event", NOW, {"lead_id": "ignored"}))
    count = len(lead_ids) if counted is None else counted
    events = {EVENT: Occurrences(NOW, NOW, count), "other_event": Occurrences(NOW, NOW, 1)}
    return Profile("b1", NOW, recent, events=events)


def run(signal: str, acknowledged: set[str], counts: Counter[str]) -> RunFigures:
    return figures(signal, acknowledged, {"never"}, counts, Observed(4, 0, True, 12.0, FAULTS))


def test_events_are_counted_per_lead_across_profiles() -> None:
    counts = events_per_lead([profile("a", "b", "a"), profile("c")])
    assert counts == Counter({"a": 2, "b": 1, "c": 1})


def test_a_profile_with_more_events_than_kept_cannot_be_counted() -> None:
    with pytest.raises(UncountableEvents, match="SANDBOX_RECENT_EVENTS"):
        events_per_lead([profile("a", counted=2)])


def test_lost_are_acknowledged_leads_without_an_event_and_duplicates_the_extra_events() -> None:
    figures_ = run("SIGKILL", {"a", "b", "c"}, Counter({"a": 3, "b": 1, "x": 2}))
    assert (figures_.acknowledged, figures_.delivered, figures_.lost) == (3, 2, 1)
    assert figures_.abandoned == 1
    assert figures_.duplicates == 3  # two more of a, one more of x (posted, never acknowledged)
    assert figures_.duplicates_per_10k == pytest.approx(10_000.0)
    assert figures_.duplicates_per_stop == pytest.approx(0.75)


def test_verdict_fails_on_loss_on_unfinished_delivery_and_on_sigterm_duplicates() -> None:
    clean = run("SIGTERM", {"a", "b"}, Counter({"a": 1, "b": 1}))
    assert judge([clean], 1.0).passed
    lossy = run("SIGKILL", {"a", "b"}, Counter({"a": 2}))
    assert judge([lossy], None).failures == ("SIGKILL: 1 acknowledged leads never delivered",)
    twice = run("SIGTERM", {"a", "b"}, Counter({"a": 2, "b": 1}))
    assert "SIGTERM: 5000.0 duplicate events" in judge([twice], 1.0).failures[0]
    assert judge([twice], None).passed  # no bound: duplicates reported, not judged
    killed = run("SIGKILL", {"a", "b"}, Counter({"a": 2, "b": 1}))
    assert judge([killed], 1.0).passed  # the bound is the SIGTERM run's
    unfinished = dataclasses.replace(clean, finished=False)
    assert "did not finish" in judge([unfinished], 1.0).failures[0]
    crashed = dataclasses.replace(clean, faults=dataclasses.replace(FAULTS, exits_on_their_own=1))
    assert judge([crashed], 1.0).failures == ("SIGTERM: 1 processes exited on their own",)


def test_table_and_json_show_every_run_and_the_verdict() -> None:
    runs = [
        run("SIGTERM", {"a"}, Counter({"a": 1})),
        run("SIGKILL", {"a", "b"}, Counter({"a": 1})),
    ]
    verdict = judge(runs, 1.0)
    table = format_table(runs, verdict)
    assert "SIGTERM" in table and "SIGKILL" in table
    assert "FAILED: SIGKILL: 1 acknowledged leads never delivered" in table
    document = json.loads(format_json("short", runs, verdict))
    assert document["setting"] == "short"
    assert document["passed"] is False
    assert [r["lost"] for r in document["runs"]] == [0, 1]
    assert document["runs"][0]["faults"]["braze_503s"] == 95
    assert document["runs"][0]["duplicates_per_10k"] == 0.0
    assert document["runs"][0]["raw_records"] == 4
    assert "records in the raw topic" in table
