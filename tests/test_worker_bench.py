"""`outgrow-braze bench worker`: its options, the processes' settings, and one short real run."""

from __future__ import annotations

import argparse
import json

import pytest

from connector.config import TopicSettings, load
from outgrow_braze_dev import bench, worker_bench
from outgrow_braze_dev.worker_bench import WorkerPlan, scenarios_of, worker_env


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    bench.add_bench_arguments(parser)
    worker_bench.add_worker_arguments(parser)
    return parser.parse_args(["worker", *argv])


def test_the_worker_target_and_its_defaults() -> None:
    args = parse()
    assert args.target == "worker"
    assert (args.events, args.users, args.max_seconds, args.runs) == (1_200_000, 20_000, 30.0, 3)
    assert (args.latency_ms, args.in_flight, args.scenario) == (50.0, 128, "both")
    assert [s.name for s in scenarios_of(args)] == ["open", "binding"]
    assert [s.budget_per_s for s in scenarios_of(args)] == [1_000.0, 100.0]


def test_one_scenario_with_its_own_budget() -> None:
    args = parse("--scenario", "binding", "--binding-budget", "150/3s")
    [scenario] = scenarios_of(args)
    assert (scenario.name, scenario.budget_text, scenario.budget_per_s) == ("binding", "150/3s", 50)


@pytest.mark.parametrize(
    "argv",
    [
        ["--events", "0"],
        ["--events", "99999999"],
        ["--open-budget", "fast"],
        ["--max-seconds", "0"],
        ["--in-flight", "-1"],
        ["--scenario", "nope"],
    ],
)
def test_bad_options_are_refused(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        parse(*argv)


def test_the_worker_gets_only_the_benchs_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAPPING_FILE", "/somewhere/else.yaml")
    monkeypatch.setenv("WORKER_BATCH_WINDOW_MS", "999")
    topics = load(TopicSettings, {"raw_topic": "r", "dlq_topic": "d", "state_topic": "s"})
    plan = WorkerPlan("127.0.0.1:9", topics, "http://127.0.0.1:8", "key", "300/3s", 32, "g")
    env = worker_env(plan, 7)
    assert "MAPPING_FILE" not in env and "WORKER_BATCH_WINDOW_MS" not in env
    assert env["RAW_TOPIC"] == "r" and env["DLQ_TOPIC"] == "d" and env["STATE_TOPIC"] == "s"
    assert env["BRAZE_RATE_LIMIT"] == "300/3s" and env["CONSUMER_GROUP"] == "g"
    assert env["WORKER_MAX_REQUESTS_IN_FLIGHT"] == "32" and env["WORKER_PORT"] == "7"
    assert env["WORKER_HOST"] == "127.0.0.1"


def test_the_sandbox_gets_the_budget_and_the_latency() -> None:
    [scenario] = scenarios_of(parse("--scenario", "binding"))
    env = worker_bench.sandbox_env(5, "secret", scenario, 50.0)
    assert env["SANDBOX_TRACK_RATE_LIMIT"] == "300"
    assert env["SANDBOX_TRACK_RATE_WINDOW_S"] == "3"
    assert json.loads(env["SANDBOX_FAULTS"]) == {"latency_ms": 50.0}
    assert env["SANDBOX_HOST"] == "127.0.0.1" and env["SANDBOX_PORT"] == "5"


def test_a_short_run_delivers_everything_and_stops_everything(
    bootstrap_servers: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", bootstrap_servers)
    args = parse("--events", "400", "--runs", "1", "--scenario", "open", "--max-seconds", "20")
    args.json = True
    assert worker_bench.run_worker_bench(args) == 0
    report = json.loads(capsys.readouterr().out)
    [scenario] = report["scenarios"]
    [account] = scenario["accounting"]
    assert account == {
        "backlog": 400,
        "committed": 400,
        "delivered_events": 400,
        "dead_letters": 0,
        "drained": True,
    }
    [run] = scenario["runs"]  # 400 leads may all go before the first reading: figures vary
    assert run["drained"] and run["statuses"].get("429") is None
    assert run["peak_rss_mb"] > 10  # the worker process's own, read from /proc while it ran
    assert report["ok"] is True


def test_peak_rss_is_read_from_proc_of_a_live_process_only() -> None:
    import os

    own = worker_bench.peak_rss_mb(os.getpid())
    assert own is not None and own > 10
    assert worker_bench.peak_rss_mb(2**22 + 1) is None  # beyond pid_max: no such process
