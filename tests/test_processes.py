"""The benchmarks' processes: cores, the first line a server prints, CPU time, stopping."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from outgrow_braze_dev.processes import (
    BenchError,
    CpuPlan,
    cpu_seconds,
    log_tail,
    pinned,
    read_first_line,
    stop_process,
)


def test_cpu_seconds_reads_proc_or_says_none() -> None:
    own = cpu_seconds(os.getpid())
    if Path("/proc/self/stat").exists():
        assert own is not None and own > 0
    assert cpu_seconds(2**22 + 12345) is None


def test_commands_are_pinned_only_to_given_cores() -> None:
    assert pinned(["wrk"], (1, 2)) == ["taskset", "-c", "1,2", "wrk"]
    assert pinned(["wrk"], None) == ["wrk"]
    assert CpuPlan(None, None).describe() == "not pinned (taskset not found)"
    assert CpuPlan((0,), (1,)).describe("worker") == "worker pinned to core 0, load on cores 1"


def _server(script: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)


@pytest.mark.parametrize(
    ("script", "url"),
    [
        (
            "print('http://127.0.0.1:9/', flush=True); import time; time.sleep(30)",
            "http://127.0.0.1:9/",
        ),
        ("print('not ready', flush=True)", None),
        ("import time; time.sleep(30)", None),
    ],
)
def test_a_server_is_ready_once_it_prints_its_url(script: str, url: str | None) -> None:
    process = _server(script)
    try:
        if url is None:
            with pytest.raises(BenchError, match="printed no URL"):
                read_first_line(process, 2.0)
        else:
            assert read_first_line(process, 10.0) == url
    finally:
        stop_process(process)
        assert process.stdout is not None
        process.stdout.close()
    assert process.returncode is not None


def test_a_log_tail_is_its_last_lines_or_nothing(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    log.write_text("".join(f"line {n}\n" for n in range(30)))
    assert log_tail(log, lines=3) == "line 27\nline 28\nline 29"
    assert log_tail(tmp_path / "missing.log") == ""
