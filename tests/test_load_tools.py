"""The load tools: wrk's script and the results of wrk and the built-in generators."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from outgrow_braze_dev.load_tools import (
    WRK_MARKER,
    choose_tool,
    parse_loadgen_output,
    parse_wrk_output,
    run_tool,
    wrk_script,
)
from outgrow_braze_dev.processes import BenchError

WRK_SAMPLE = """\
Running 15s test @ http://127.0.0.1:40123/webhooks/outgrow?token=abc
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    20.61ms    8.02ms 112.32ms   81.25%
    Req/Sec     3.11k   210.45     3.52k    72.00%
  46512 requests in 15.01s, 11.71MB read
  Non-2xx or 3xx responses: 12
Requests/sec:   3098.74
Transfer/sec:    798.93KB
BENCH_RESULT {"requests":46512,"duration_us":15010000,"status":12,"connect":0,"read":1,\
"write":0,"timeout":2,"p50_us":19466,"p90_us":30511,"p99_us":48201,"max_us":112320}
"""


def test_wrk_output_is_parsed() -> None:
    result = parse_wrk_output(WRK_SAMPLE)
    assert result.requests == 46512
    assert result.duration_s == 15.01
    assert result.rps == pytest.approx(3098.7, abs=0.1)
    assert (result.p50_ms, result.p90_ms, result.p99_ms) == (19.466, 30.511, 48.201)
    assert result.max_ms == 112.32
    assert result.non_2xx == {"4xx/5xx": 12}
    assert result.errors == 3
    assert result.accepted == 46500
    assert not result.clean


def test_wrk_output_without_the_result_line_is_an_error() -> None:
    with pytest.raises(BenchError, match="no result line"):
        parse_wrk_output("Running 1s test @ http://127.0.0.1:1/\n")


def test_wrk_script_posts_the_body_file_to_the_path(tmp_path: Path) -> None:
    script = wrk_script(tmp_path / "bodies.jsonl", "/webhooks/outgrow?token=abc")
    assert f"[==[{tmp_path / 'bodies.jsonl'}]==]" in script
    assert "[==[/webhooks/outgrow?token=abc]==]" in script
    assert '["Content-Type"] = "application/json"' in script
    assert WRK_MARKER in script


LOADGEN_LINE = {
    "requests": 10,
    "non_2xx": {"503": 2},
    "errors": 1,
    "duration_s": 1.0,
    "rps": 10.0,
    "p50_ms": 1.5,
    "p90_ms": 2.0,
    "p99_ms": 3.0,
    "max_ms": 4.0,
}


def test_loadgen_output_is_parsed() -> None:
    result = parse_loadgen_output(f"{json.dumps(LOADGEN_LINE)}\n")
    assert (result.requests, result.accepted, result.errors) == (10, 8, 1)
    assert result.non_2xx == {"503": 2}


def test_auto_picks_wrk_only_where_it_is_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("shutil.which", lambda name: None)
    assert choose_tool("auto") == "builtin"
    assert choose_tool("builtin") == "builtin"
    with pytest.raises(BenchError, match="wrk is not installed"):
        choose_tool("wrk")
    monkeypatch.setattr("shutil.which", lambda name: f"/usr/bin/{name}")
    assert choose_tool("auto") == "wrk"


def test_a_run_reads_the_tools_result_line() -> None:
    line = json.dumps({**LOADGEN_LINE, "requests": 7})
    result = run_tool([sys.executable, "-c", f"print({line!r})"], "builtin", 1.0)
    assert (result.requests, result.accepted) == (7, 5)


def test_a_failing_tool_is_an_error_with_the_end_of_its_output() -> None:
    script = "import sys; sys.stderr.write('first\\n' * 30 + 'the reason\\n'); sys.exit(3)"
    with pytest.raises(BenchError, match=r"builtin failed \(3\): (first\n){19}the reason$"):
        run_tool([sys.executable, "-c", script], "builtin", 1.0)
