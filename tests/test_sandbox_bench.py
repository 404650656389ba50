"""`outgrow-braze bench sandbox`: bodies, the wrk script, the plan, the report, one short run."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from outgrow_braze_dev import bench, commands
from outgrow_braze_dev.load_tools import WRK_MARKER, RunResult
from outgrow_braze_dev.processes import BenchError, SandboxProcess
from outgrow_braze_dev.sandbox import bench as sandbox_bench
from outgrow_braze_dev.sandbox import load as sandbox_load
from outgrow_braze_dev.sandbox.bench import (
    SandboxBenchReport,
    load_command,
    problems,
    track_body,
    wrk_script,
)
from outgrow_braze_dev.sandbox.contract import ObjectLimit, check_track

GOOD = RunResult(100, 1.0, 100.0, 1.0, 2.0, 3.0, 4.0)


def test_bodies_are_small_valid_track_requests_over_many_users() -> None:
    first, again = track_body(0), track_body(sandbox_bench.USERS)
    assert first["attributes"][0]["external_id"] == again["attributes"][0]["external_id"]
    assert track_body(1)["events"][0]["external_id"] != first["events"][0]["external_id"]
    batch = check_track(first, ObjectLimit())
    assert (batch.errors, batch.counts) == ([], {"attributes": 1, "events": 1})
    assert len(json.dumps(first, separators=(",", ":"))) < 400


def test_the_wrk_script_sends_the_key_and_stops_at_the_limit(tmp_path: Path) -> None:
    script = wrk_script(tmp_path / "b.jsonl", "s3cret", 1234)
    assert '"Bearer " .. [==[s3cret]==]' in script
    assert "if answered >= 1234 then wrk.thread:stop() end" in script
    assert WRK_MARKER in script
    with pytest.raises(BenchError):
        wrk_script(tmp_path / "b.jsonl", "bad]==]key", 1)


def test_load_commands_are_bounded_in_time_and_count(tmp_path: Path) -> None:
    sandbox = SandboxProcess(None, "http://127.0.0.1:9", "k", tmp_path / "log")  # type: ignore[arg-type]
    builtin = load_command("builtin", sandbox, 8, 2.0, tmp_path)
    assert builtin[builtin.index("--max-requests") + 1] == str(2 * sandbox_bench.MAX_REQUESTS_PER_S)
    assert builtin[builtin.index("--url") + 1] == "http://127.0.0.1:9/users/track"
    wrk = load_command("wrk", sandbox, 8, 2.0, tmp_path)
    assert wrk[:4] == ["wrk", "-t1", "-c8", "-d2s"]
    assert "wrk.thread:stop()" in (tmp_path / "track.lua").read_text()


def test_a_key_beginning_with_a_dash_reaches_the_load_tool(tmp_path: Path) -> None:
    # Keys are random URL-safe text: one in 64 begins with "-", which argparse took for an option.
    sandbox = SandboxProcess(None, "http://127.0.0.1:9", "-k3y", tmp_path / "log")  # type: ignore[arg-type]
    command = load_command("builtin", sandbox, 8, 2.0, tmp_path)
    assert command[1:3] == ["-m", "outgrow_braze_dev.sandbox.load"]
    assert sandbox_load.build_parser().parse_args(command[3:]).api_key == "-k3y"


def test_the_report_flags_errors_and_missing_201s() -> None:
    report = SandboxBenchReport("wrk", 8, 1.0, 0.0, "not pinned", runs=[GOOD, GOOD])
    report.sandbox_created = 200
    assert problems(report) == []
    assert "median" in sandbox_bench.format_table(report)
    report.runs.append(RunResult(10, 1.0, 10.0, 1.0, 1.0, 1.0, 1.0, non_2xx={"429": 1}))
    found = problems(report)
    assert any(line.startswith("run 3: NON-2XX") for line in found)
    assert any("COUNT CHECK FAILED" in line for line in found)
    assert report.as_dict()["ok"] is False


def test_bench_accepts_the_sandbox_target() -> None:
    parser = argparse.ArgumentParser()
    bench.add_bench_arguments(parser)
    assert parser.parse_args(["sandbox"]).target == "sandbox"


def test_a_short_run_measures_and_stops_everything(capsys: pytest.CaptureFixture[str]) -> None:
    args = argparse.Namespace(
        target="sandbox", duration=0.5, runs=1, connections=4, warmup=0.0, tool="auto", json=True
    )
    assert commands.cmd_bench(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["ok"] is True
    assert summary["runs"][0]["requests"] > 0
    assert summary["sandbox_201"] >= summary["accepted"]
    if Path("/proc/self/stat").exists():
        assert summary["median_sandbox_cpu_us_per_request"] > 0
