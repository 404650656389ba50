"""The worker benchmark's figures, targets, accounting and printing."""

from __future__ import annotations

import json

import pytest

from outgrow_braze_dev.worker_report import (
    Accounting,
    Counters,
    RunFigures,
    Scenario,
    ScenarioReport,
    Target,
    WorkerBenchReport,
    format_report,
    measure,
)


def counters(
    at_s: float, ok: int, throttled: int, events: int, attributes: int, cpu: float
) -> Counters:
    stats = {
        "requests": {
            "/users/track": {"201": ok, "429": throttled},
            "/users/export/ids": {"201": 9},
        },
        "objects_processed": {"attributes": attributes, "events": events, "purchases": 0},
        "max_track_requests_in_3s": 280,
    }
    return Counters.from_stats(stats, at_s, cpu, cpu / 2)


def run(events_per_s: float = 15_000.0, **changes: object) -> RunFigures:
    values: dict[str, object] = {
        "seconds": 10.0,
        "events": int(events_per_s * 10),
        "requests": 2_000,
        "accepted": 2_000,
        "objects": 150_000,
        "throttled": 0,
        "budget_per_s": 1_000.0,
        "drained": False,
        "startup_s": 2.0,
        "peak_3s": 600,
        "cpu_s": 4.0,
    }
    values.update(changes)
    return RunFigures(**values)  # type: ignore[arg-type]


def test_figures_are_the_differences_between_two_readings() -> None:
    first = counters(100.0, ok=10, throttled=0, events=300, attributes=290, cpu=5.0)
    last = counters(110.0, ok=410, throttled=4, events=15_300, attributes=14_890, cpu=7.5)
    figures = measure(first, last, 100.0, drained=True, startup_s=1.5)
    assert (figures.seconds, figures.events, figures.requests) == (10.0, 15_000, 404)
    assert figures.events_per_s == 1_500
    assert figures.requests_per_s == pytest.approx(40.4)
    assert figures.objects_per_request == pytest.approx((15_000 + 14_600) / 400)
    assert figures.utilisation == pytest.approx(404 / 1_000)
    assert figures.throttled == 4 and figures.statuses == {"201": 400, "429": 4}
    assert figures.cpu_ms_per_1000 == pytest.approx(2.5 * 1e6 / 15_000)
    assert figures.sandbox_core_share == pytest.approx(1.25 / 10)
    assert figures.peak_3s == 280 and figures.drained


def test_unknown_cpu_time_is_reported_as_unknown() -> None:
    figures = run(cpu_s=None, events=0)
    assert figures.cpu_ms_per_1000 is None
    assert run(events=0).cpu_ms_per_1000 is None
    assert figures.value("peak_rss_mb") is None  # until the bench has read /proc


def test_targets_judge_the_medians() -> None:
    open_ = ScenarioReport(Scenario.named("open", "3000/3s"))
    open_.runs = [
        run(19_000, peak_rss_mb=150.0),
        run(21_000, peak_rss_mb=240.0),
        run(20_500, cpu_s=9.0, peak_rss_mb=190.0),
    ]
    assert open_.median("events_per_s") == 20_500
    verdicts = {target.name: (value, met) for target, value, met in open_.verdicts()}
    assert verdicts["events_per_s"] == (20_500, True)  # 20,000 at least
    assert verdicts["peak_rss_mb"] == (190.0, True)  # 200 MB at most
    assert verdicts["objects_per_request"] == (75.0, True)
    # 21.1, 19.0 and 43.9 ms: the median, 50 at most
    assert verdicts["cpu_ms_per_1000"] == (pytest.approx(4e6 / 190_000), True)
    binding = ScenarioReport(Scenario.named("binding", "300/3s"))
    binding.runs = [run(requests=960, throttled=1, budget_per_s=100.0)]
    verdicts = {target.name: (value, met) for target, value, met in binding.verdicts()}
    assert verdicts["utilisation"] == (0.96, True)
    assert verdicts["throttled"] == (1.0, False)


def test_a_target_without_a_figure_is_not_met() -> None:
    target = Target("CPU", "cpu_ms_per_1000", maximum=40)
    assert not target.met(None)
    assert target.met(40) and not target.met(40.1)
    assert target.describe() == "CPU <= 40"
    assert Target("x", "events_per_s", minimum=15_000).describe() == "x >= 15000"


@pytest.mark.parametrize(
    ("account", "problem"),
    [
        (Accounting(1_000, 1_000, 1_000, 0, drained=True), None),
        (Accounting(1_000, 400, 420, 0, drained=False), None),
        (Accounting(1_000, 400, 399, 0, drained=False), "EVENTS LOST"),
        (Accounting(1_000, 990, 1_000, 0, drained=True), "OFFSETS SHORT"),
        (Accounting(1_000, 1_000, 1_000, 3, drained=True), "dead-letter"),
    ],
)
def test_accounting_finds_lost_events(account: Accounting, problem: str | None) -> None:
    found = account.problems()
    if problem is None:
        assert found == []
    else:
        assert len(found) == 1 and problem in found[0]


def test_the_report_prints_runs_medians_targets_and_accounting() -> None:
    scenario = ScenarioReport(Scenario.named("open", "3000/3s"))
    scenario.runs = [run(12_000, drained=True, peak_rss_mb=180.4), run(13_000, peak_rss_mb=230.0)]
    scenario.accounts = [Accounting(1_000, 1_000, 1_000, 0, drained=True)] * 2
    report = WorkerBenchReport(1_000, 200, 30.0, 50.0, 64, "not pinned", [scenario])
    text = format_report(report)
    assert "scenario open: budget 3000/3s" in text
    assert "median" in text and "12,500" in text
    assert "target events/s >= 20000: 12,500.00 MISSED" in text
    assert "drained" in text and "time limit" in text
    assert "Braze received 1,000 events, 0 dead letters: OK" in text
    assert "peak RSS MB" in text and "180" in text and "205" in text  # a run's, the median
    assert "target peak RSS MB <= 200: 205.20 MISSED" in text
    data = json.loads(json.dumps(report.as_dict()))
    assert data["ok"] is True
    assert data["scenarios"][0]["median"]["events_per_s"] == 12_500
    assert data["scenarios"][0]["runs"][0]["peak_rss_mb"] == 180.4
    assert data["scenarios"][0]["targets"][0] == {
        "target": "events/s >= 20000",
        "median": 12_500,
        "met": False,
    }
