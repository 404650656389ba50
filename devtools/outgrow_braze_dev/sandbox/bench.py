"""`outgrow-braze bench sandbox`: small `/users/track` requests a second one sandbox serves.

It starts `python -m connector sandbox` on a free loopback port, pinned to one core with taskset
when taskset exists, and drives it from a separate process pinned to the other cores: wrk with a
generated Lua script if installed, else `python -m outgrow_braze_dev.sandbox.load`. Each request
carries one attributes object and one event for one of 10,000 users. Runs are bounded in time
(`--duration`) and in count (`MAX_REQUESTS_PER_S` x duration); the median of `--runs` is
reported. The rate limit is lifted for the run, so every answer should be 201; the sandbox's own
count of 201s is checked against the load tool's. Everything started is stopped at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import statistics
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from connector.signals import sigterm_as_interrupt
from outgrow_braze_dev import load_tools
from outgrow_braze_dev.load_tools import REQUEST_TIMEOUT_S, RunResult, choose_tool, run_tool
from outgrow_braze_dev.processes import (
    BenchError,
    CpuPlan,
    SandboxProcess,
    cpu_seconds,
    pinned,
    sandbox_process,
)

TRACK_PATH = "/users/track"
USERS = 10_000
MAX_REQUESTS_PER_S = 50_000
UNLIMITED = 1_000_000_000

# --------------------------------------------------------------------------- request bodies


def track_body(index: int, users: int = USERS) -> dict[str, Any]:
    """A small `/users/track` body: one user's quiz attributes and one submission event."""
    user = f"bench-user-{index % users:05d}"
    return {
        "attributes": [
            {"external_id": user, "outgrow_quiz_score": index % 100, "outgrow_outcome": "Growth"}
        ],
        "events": [
            {
                "external_id": user,
                "name": "outgrow_submission",
                "time": f"2025-03-14T09:{index // 60 % 60:02d}:{index % 60:02d}Z",
                "properties": {"quiz": "savings-plan", "score": index % 100},
            }
        ],
    }


def write_track_bodies(path: Path, count: int = USERS) -> Path:
    """Write `count` bodies, one compact JSON document per line."""
    lines = (json.dumps(track_body(i), separators=(",", ":")) for i in range(count))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def wrk_script(body_file: Path, api_key: str, limit: int) -> str:
    """The Lua script that makes wrk post the bodies with the key and stop after `limit`."""
    return load_tools.wrk_script(body_file, TRACK_PATH, bearer=api_key, stop_after=limit)


# --------------------------------------------------------------------------- processes


def sandbox_env(port: int, api_key: str) -> dict[str, str]:
    """The sandbox's environment: loopback, a fresh key, no rate limit, no faults, quiet."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SANDBOX_")}
    env.update(
        SANDBOX_HOST="127.0.0.1",
        SANDBOX_PORT=str(port),
        SANDBOX_API_KEY=api_key,
        SANDBOX_TRACK_RATE_LIMIT=str(UNLIMITED),
        LOG_LEVEL="WARNING",
    )
    return env


def load_command(
    tool: str, sandbox: SandboxProcess, connections: int, seconds: float, files: Path
) -> list[str]:
    """The command line of one run of the chosen load tool."""
    limit = math.ceil(seconds * MAX_REQUESTS_PER_S)
    if tool == "wrk":
        script = files / "track.lua"
        script.write_text(wrk_script(files / "bodies.jsonl", sandbox.api_key, limit), "utf-8")
        return [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{max(1, math.ceil(seconds))}s",
            f"--timeout={REQUEST_TIMEOUT_S}s",
            "-s",
            str(script),
            sandbox.base_url + TRACK_PATH,
        ]
    return [
        sys.executable,
        "-m",
        "outgrow_braze_dev.sandbox.load",
        *("--url", sandbox.base_url + TRACK_PATH, "--duration", f"{seconds:g}"),
        *("--connections", str(connections), "--max-requests", str(limit)),
        *("--timeout", str(REQUEST_TIMEOUT_S), "--body-file", str(files / "bodies.jsonl")),
        f"--api-key={sandbox.api_key}",  # one word: a key may begin with "-"
    ]


def sandbox_stats(base_url: str) -> dict[str, Any]:
    """GET /_sandbox/stats, without any proxy."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(base_url + "/_sandbox/stats", timeout=10) as answer:
        stats: dict[str, Any] = json.loads(answer.read())
        return stats


# --------------------------------------------------------------------------- report


@dataclass
class SandboxBenchReport:
    """What one `bench sandbox` invocation measured and checked."""

    tool: str
    connections: int
    duration_s: float
    warmup_s: float
    cpus: str
    runs: list[RunResult] = field(default_factory=list)
    cpu_us: list[float | None] = field(default_factory=list)
    warmup: RunResult | None = None
    sandbox_created: int = 0

    @property
    def all_runs(self) -> list[RunResult]:
        """The warm-up (if any) and the measured runs."""
        return ([self.warmup] if self.warmup else []) + self.runs

    @property
    def accepted(self) -> int:
        """2xx answers the load tool counted, warm-up included."""
        return sum(run.accepted for run in self.all_runs)

    def median(self, name: str) -> float:
        """The median of one RunResult field over the measured runs."""
        return float(statistics.median(getattr(run, name) for run in self.runs))

    def median_cpu_us(self) -> float | None:
        """The median sandbox CPU time per answered request, when it could be read."""
        known = [value for value in self.cpu_us if value is not None]
        return float(statistics.median(known)) if known else None

    def as_dict(self) -> dict[str, Any]:
        """The summary printed by --json."""
        return {
            "target": "sandbox",
            "tool": self.tool,
            "cpus": self.cpus,
            "connections": self.connections,
            "duration_s": self.duration_s,
            "warmup_s": self.warmup_s,
            "runs": [asdict(run) for run in self.runs],
            "median": {name: self.median(name) for name in ("rps", "p50_ms", "p99_ms")},
            "sandbox_cpu_us_per_request": self.cpu_us,
            "median_sandbox_cpu_us_per_request": self.median_cpu_us(),
            "accepted": self.accepted,
            "sandbox_201": self.sandbox_created,
            "ok": not problems(self),
        }


def format_table(report: SandboxBenchReport) -> str:
    """The human-readable summary."""
    lines = [
        f"bench sandbox: tool {report.tool}, {report.connections} connections, "
        f"{len(report.runs)} x {report.duration_s:g} s after {report.warmup_s:g} s warm-up",
        f"1 sandbox process; {report.cpus}; small POST /users/track (1 attribute + 1 event)",
        "",
        f"{'run':<8}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'requests':>11}{'non-2xx':>9}",
    ]
    for number, run in enumerate(report.runs, 1):
        lines.append(
            f"{number:<8}{run.rps:>10.1f}{run.p50_ms:>10.2f}{run.p99_ms:>10.2f}"
            f"{run.requests:>11}{sum(run.non_2xx.values()):>9}"
        )
    lines.append(
        f"{'median':<8}{report.median('rps'):>10.1f}{report.median('p50_ms'):>10.2f}"
        f"{report.median('p99_ms'):>10.2f}"
    )
    lines.append(
        f"\nsandbox counted {report.sandbox_created} answers 201 for {report.accepted} 2xx"
    )
    cpu = report.median_cpu_us()
    if cpu:
        lines.append(
            f"sandbox CPU per request: {cpu:.1f} us (median), i.e. {1e6 / cpu:,.0f} requests/s "
            "with a core of its own"
        )
    return "\n".join(lines)


def problems(report: SandboxBenchReport) -> list[str]:
    """Everything that makes the benchmark fail, one loud line each."""
    found = []
    for number, run in enumerate(report.all_runs):
        name = "warm-up" if report.warmup and number == 0 else f"run {number + (not report.warmup)}"
        if not run.clean:
            found.append(f"{name}: NON-2XX {run.non_2xx} / {run.errors} REQUEST ERRORS")
    if report.sandbox_created < report.accepted:
        found.append(
            f"COUNT CHECK FAILED: the sandbox answered 201 {report.sandbox_created} times, "
            f"the load tool counted {report.accepted} 2xx"
        )
    return found


# --------------------------------------------------------------------------- the run


def _say(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def _bench(args: argparse.Namespace, tool: str) -> SandboxBenchReport:
    plan = CpuPlan.detect()
    report = SandboxBenchReport(tool, args.connections, args.duration, args.warmup, plan.describe())
    with contextlib.ExitStack() as stack:
        files = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="sandbox-bench-")))
        write_track_bodies(files / "bodies.jsonl")
        sandbox = stack.enter_context(
            sandbox_process(sandbox_env, plan.server, files / "sandbox.log")
        )
        _say(f"sandbox ready at {sandbox.base_url} ({report.cpus})")

        def once(seconds: float) -> RunResult:
            command = load_command(tool, sandbox, args.connections, seconds, files)
            return run_tool(pinned(command, plan.load), tool, seconds)

        if args.warmup > 0:
            _say(f"warm-up {args.warmup:g} s")
            report.warmup = once(args.warmup)
        for number in range(1, args.runs + 1):
            before = cpu_seconds(sandbox.process.pid)
            run = once(args.duration)
            report.runs.append(run)
            report.cpu_us.append(_per_request_us(before, cpu_seconds(sandbox.process.pid), run))
            _say(f"run {number}/{args.runs}: {run.rps:.1f} req/s")
        stats = sandbox_stats(sandbox.base_url)
        report.sandbox_created = int(stats["requests"].get(TRACK_PATH, {}).get("201", 0))
    return report


def _per_request_us(before: float | None, after: float | None, run: RunResult) -> float | None:
    if before is None or after is None or not run.requests:
        return None
    return round((after - before) / run.requests * 1e6, 1)


def run_sandbox_bench(args: argparse.Namespace) -> int:
    """Run the sandbox benchmark; 0 when every answer was 201 and the counts agree, else 1."""
    started = time.monotonic()
    try:
        tool = choose_tool(args.tool)
        with sigterm_as_interrupt():
            report = _bench(args, tool)
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(report.as_dict(), indent=2) if args.json else format_table(report))
    found = problems(report)
    for problem in found:
        print(f"bench: !!! {problem}", file=sys.stderr)
    _say(f"done in {time.monotonic() - started:.0f} s")
    return 1 if found else 0
