"""`outgrow-braze bench receiver` and its options, and the built-in load generator."""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from outgrow_braze_dev import bench, loadgen
from outgrow_braze_dev.load_tools import RunResult, parse_wrk_output, wrk_script

# --------------------------------------------------------------------------- loadgen


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/webhooks/outgrow",
        "http://10.0.0.5:8080/",
        "http://192.168.1.20/",
        "http://8.8.8.8/",
        "http://127.0.0.1.example.com/",
        "ftp://127.0.0.1/",
        "http:///no-host",
    ],
)
def test_loadgen_refuses_urls_off_this_machine(url: str) -> None:
    with pytest.raises(loadgen.NotLoopback):
        loadgen.check_loopback(url)


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8080/webhooks/outgrow?token=x", "http://localhost/", "http://[::1]:80/"],
)
def test_loadgen_accepts_loopback_urls(url: str) -> None:
    assert loadgen.check_loopback(url) == url


def test_loadgen_command_line_refuses_a_remote_host(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    body_file = tmp_path / "bodies.jsonl"
    body_file.write_text('{"a": 1}\n')
    argv = ["--url", "http://example.com/", "--duration", "1", "--body-file", str(body_file)]
    with pytest.raises(SystemExit) as exit_info:
        loadgen.main(argv)
    assert exit_info.value.code == 2
    assert "refusing to load-test host 'example.com'" in capsys.readouterr().err


def test_percentiles_of_a_known_list() -> None:
    values = [float(v) for v in range(1, 101)]
    assert loadgen.percentile(values, 50) == 50.0
    assert loadgen.percentile(values, 90) == 90.0
    assert loadgen.percentile(values, 99) == 99.0
    assert loadgen.percentile(values, 100) == 100.0
    assert loadgen.percentile(values, 0) == 1.0
    assert loadgen.percentile([7.0], 99) == 7.0
    assert loadgen.percentile([], 50) == 0.0


def test_summary_of_a_tally() -> None:
    tally = loadgen.Tally.for_capacity(10)
    for ms in (4, 1, 3, 2):
        tally.record(ms / 1000.0, 202)
    tally.record(0.005, 503)
    tally.errors["ClientOSError"] += 1
    summary = loadgen.summarize(tally, elapsed_s=2.0)
    assert summary["requests"] == 5
    assert summary["non_2xx"] == {"503": 1}
    assert summary["errors"] == 1
    assert summary["rps"] == 2.5
    assert (summary["p50_ms"], summary["p99_ms"], summary["max_ms"]) == (3.0, 5.0, 5.0)


def test_bodies_are_read_one_per_line(tmp_path: Path) -> None:
    body_file = tmp_path / "bodies.jsonl"
    body_file.write_text('{"a":1}\n\n{"b":2}\n')
    assert loadgen.read_bodies(body_file) == [b'{"a":1}', b'{"b":2}']
    body_file.write_text("\n")
    with pytest.raises(ValueError, match="no request body"):
        loadgen.read_bodies(body_file)


# --------------------------------------------------------------------------- bench


def test_bench_arguments_have_their_defaults() -> None:
    parser = argparse.ArgumentParser()
    bench.add_bench_arguments(parser)
    args = parser.parse_args(["receiver"])
    assert args.target == "receiver"
    assert (args.duration, args.runs, args.connections, args.warmup) == (15.0, 3, 64, 3.0)
    assert args.tool == "auto"
    assert args.json is False


def test_bench_arguments_refuse_unknown_values() -> None:
    parser = argparse.ArgumentParser()
    bench.add_bench_arguments(parser)
    for argv in (["sender"], ["receiver", "--tool", "ab"], ["receiver", "--runs", "0"]):
        with pytest.raises(SystemExit):
            parser.parse_args(argv)


def test_leads_vary_the_email_and_weigh_about_600_bytes() -> None:
    first, again, other = bench.lead(0), bench.lead(bench.USERS), bench.lead(1)
    assert first["user_info"]["email"] == again["user_info"]["email"]
    assert first["user_info"]["email"] != other["user_info"]["email"]
    assert first["results"][0] == {"title": "Score", "value": 72}
    assert 450 < len(json.dumps(first, separators=(",", ":"))) < 800


def _report(runs: list[RunResult], records_added: int) -> bench.BenchReport:
    report = bench.BenchReport("receiver", "builtin", 64, 15.0, 0.0, "127.0.0.1:9092", "raw")
    report.runs = runs
    report.records_added = records_added
    return report


def test_report_flags_non_2xx_and_missing_records() -> None:
    good = RunResult(100, 1.0, 100.0, 1.0, 2.0, 3.0, 4.0)
    bad = RunResult(100, 1.0, 100.0, 1.0, 2.0, 3.0, 4.0, non_2xx={"503": 5})
    assert bench.problems(_report([good, good], records_added=200)) == []
    found = bench.problems(_report([good, bad], records_added=150))
    assert any("run 2: NON-2XX" in line for line in found)
    assert any("RECORDS CHECK FAILED: 150 new records < 195 2xx" in line for line in found)
    table = bench.format_table(_report([good, bad], records_added=150))
    assert "median" in table
    assert "FAILED" in table


# --------------------------------------------------------------------------- end to end


@pytest.fixture
async def accepting_server() -> AsyncIterator[str]:
    """A real HTTP server on 127.0.0.1 that answers every post with 202."""

    async def accept(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"status": "accepted"}, status=202)

    app = web.Application()
    app.router.add_post("/webhooks/outgrow", accept)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}/webhooks/outgrow?token=abc"
    finally:
        await runner.cleanup()


async def _run(*command: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


async def test_loadgen_runs_against_a_local_server(accepting_server: str, tmp_path: Path) -> None:
    body_file = bench.write_bodies(tmp_path / "bodies.jsonl", count=50)
    code, stdout, stderr = await _run(
        sys.executable,
        "-m",
        "outgrow_braze_dev.loadgen",
        "--url",
        accepting_server,
        "--duration",
        "1",
        "--connections",
        "4",
        "--body-file",
        str(body_file),
    )
    assert code == 0, stderr
    lines = stdout.strip().splitlines()
    assert len(lines) == 1
    summary: dict[str, Any] = json.loads(lines[0])
    assert summary["requests"] > 0
    assert summary["non_2xx"] == {}
    assert summary["errors"] == 0
    assert summary["p50_ms"] <= summary["p99_ms"] <= summary["max_ms"]


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
async def test_wrk_script_runs_against_a_local_server(
    accepting_server: str, tmp_path: Path
) -> None:
    body_file = bench.write_bodies(tmp_path / "bodies.jsonl", count=50)
    script = tmp_path / "post.lua"
    script.write_text(wrk_script(body_file, "/webhooks/outgrow?token=abc"))
    plan = bench.LoadPlan("wrk", accepting_server, 4, body_file, script)
    code, stdout, stderr = await _run(*bench.load_command(plan, 1))
    assert code == 0, stderr
    result = parse_wrk_output(stdout)
    assert result.requests > 0
    assert result.clean


async def test_loadgen_stops_by_itself_when_the_server_never_answers() -> None:
    async def stall(request: web.Request) -> web.Response:
        await asyncio.sleep(60)
        return web.Response(status=202)

    app = web.Application()
    app.router.add_post("/", stall)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    try:
        load = loadgen.Load(f"http://{host}:{port}/", 0.2, 2, 100, [b"{}"], timeout_s=0.3)
        summary = await loadgen.run_load(load)
    finally:
        await runner.cleanup()
    assert summary["requests"] == 0
    assert summary["error_types"] == {"Unanswered": 2}
