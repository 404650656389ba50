"""`outgrow-braze bench receiver`: how many webhooks a second one receiver process acknowledges.

It starts a local Kafka broker (or uses KAFKA_BOOTSTRAP_SERVERS), one receiver process on a free
loopback port, warms it up, then runs the load `--runs` times with wrk (if installed) or the
built-in load generator (`python -m outgrow_braze_dev.loadgen`). It prints each run's
requests/s, p50 and p99 with their medians, insists that every answer was 2xx, and checks that
the raw topic grew by at least as many records as there were 2xx answers. Everything it started
is stopped at the end, on error and on Ctrl-C too. Traffic only ever goes to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from connector.config import TopicSettings, load
from connector.signals import sigterm_as_interrupt
from outgrow_braze_dev.load_tools import (
    REQUEST_TIMEOUT_S,
    TOOLS,
    RunResult,
    choose_tool,
    run_tool,
    wrk_script,
)
from outgrow_braze_dev.loadgen import positive_float, positive_int
from outgrow_braze_dev.processes import (
    BenchError,
    CpuPlan,
    free_port,
    log_tail,
    pinned,
    start_connector,
    stop_process,
)

TARGETS = ["receiver", "sandbox", "replay", "worker", "state"]
USERS = 10_000
WRK_THREADS = 1
READY_TIMEOUT_S = 120.0
WEBHOOK_PATH = "/webhooks/outgrow"
PRODUCER = "acks=all, idempotent producer, local broker"


# --------------------------------------------------------------------------- command line


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"expected zero or a positive number, got {text!r}")
    return value


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `bench` options to a (sub)parser."""
    parser.add_argument("target", choices=TARGETS, help="what to benchmark")
    parser.add_argument(
        "--duration", type=positive_float, default=15.0, help="seconds per run (default 15)"
    )
    parser.add_argument(
        "--runs", type=positive_int, default=3, help="measured runs; the median is reported"
    )
    parser.add_argument(
        "--connections", type=positive_int, default=64, help="concurrent connections (64)"
    )
    parser.add_argument(
        "--warmup", type=_non_negative_float, default=3.0, help="warm-up seconds (default 3)"
    )
    parser.add_argument(
        "--tool",
        choices=TOOLS,
        default="auto",
        help="load tool: wrk, the built-in generator, or auto (wrk if installed)",
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


# --------------------------------------------------------------------------- request bodies


def lead(index: int, users: int = USERS) -> dict[str, Any]:
    """An Outgrow-like lead of about 600 bytes; the e-mail cycles over `users` people."""
    user = index % users
    return {
        "event": "LEADS",
        "id": f"{index:024x}",
        "calc_id": "5f7b1e2c9a3d4b0017c0ffee",
        "calc_name": "Which savings plan suits you?",
        "type": "Calculator",
        "created_at": f"2025-03-14T09:{index // 60 % 60:02d}:{index % 60:02d}.589Z",
        "user_info": {
            "fullName": f"Bench User {user}",
            "email": f"bench.user.{user}@example.com",
            "phone": f"+1 202 555 {user:04d}",
        },
        "questions": [
            {"question": "How much do you save each month?", "answer": 400},
            {"question": "When do you plan to retire?", "answer": "In 20-30 years"},
            {"question": "How do you feel about investment risk?", "answer": "Moderate"},
        ],
        "results": [
            {"title": "Score", "value": 72},
            {"title": "Outcome", "value": "Growth Stage"},
        ],
        "total_question": 3,
        "answered": 3,
    }


def write_bodies(path: Path, count: int = USERS) -> Path:
    """Write `count` lead bodies, one compact JSON document per line."""
    lines = (json.dumps(lead(i), separators=(",", ":")) for i in range(count))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# --------------------------------------------------------------------------- load


@dataclass(frozen=True)
class LoadPlan:
    """How to drive one load run."""

    tool: str
    url: str
    connections: int
    body_file: Path
    script: Path
    cores: tuple[int, ...] | None = None  # where the load tool runs (None: anywhere)


def load_command(plan: LoadPlan, seconds: float) -> list[str]:
    """The command line of one run of the chosen tool."""
    return pinned(_tool_command(plan, seconds), plan.cores)


def _tool_command(plan: LoadPlan, seconds: float) -> list[str]:
    if plan.tool == "wrk":
        return [
            "wrk",
            f"-t{min(WRK_THREADS, plan.connections)}",
            f"-c{plan.connections}",
            f"-d{max(1, math.ceil(seconds))}s",
            f"--timeout={REQUEST_TIMEOUT_S}s",
            "-s",
            str(plan.script),
            plan.url,
        ]
    return [
        sys.executable,
        "-m",
        "outgrow_braze_dev.loadgen",
        "--url",
        plan.url,
        "--duration",
        f"{seconds:g}",
        "--connections",
        str(plan.connections),
        "--timeout",
        str(REQUEST_TIMEOUT_S),
        "--body-file",
        str(plan.body_file),
    ]


def run_load(plan: LoadPlan, seconds: float) -> RunResult:
    """Run the load tool once and read its result."""
    return run_tool(load_command(plan, seconds), plan.tool, seconds)


# --------------------------------------------------------------------------- receiver process


@dataclass(frozen=True)
class Receiver:
    """A receiver process started for the benchmark."""

    process: subprocess.Popen[bytes]
    port: int
    token: str
    log_file: Path

    @property
    def base_url(self) -> str:
        """The receiver's root URL on loopback."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def webhook_path(self) -> str:
        """The webhook path with its token."""
        return f"{WEBHOOK_PATH}?token={self.token}"

    def log_tail(self) -> str:
        """The last lines the receiver wrote."""
        return log_tail(self.log_file)


def receiver_env(bootstrap: str, port: int, token: str) -> dict[str, str]:
    """The environment of the receiver process."""
    env = dict(os.environ)
    env.pop("WEBHOOK_BASIC_AUTH", None)
    env.update(
        KAFKA_BOOTSTRAP_SERVERS=bootstrap,
        RECEIVER_HOST="127.0.0.1",
        RECEIVER_PORT=str(port),
        WEBHOOK_TOKENS=token,
        RECEIVER_ENSURE_TOPICS="true",
        LOG_LEVEL="WARNING",
    )
    return env


@contextlib.contextmanager
def receiver_process(
    bootstrap: str, workdir: Path, cores: tuple[int, ...] | None = None
) -> Iterator[Receiver]:
    """Start `python -m connector receiver` (on `cores` if given), yield it, and always stop it
    with SIGTERM."""
    port, token = free_port(), secrets.token_urlsafe(24)
    log_file = workdir / "receiver.log"
    with log_file.open("wb") as log:
        env = receiver_env(bootstrap, port, token)
        process = start_connector("receiver", env, cores, stdout=log, stderr=subprocess.STDOUT)
        try:
            yield Receiver(process, port, token, log_file)
        finally:
            stop_process(process)


def _answers_ready(opener: urllib.request.OpenerDirector, url: str) -> bool:
    try:
        with opener.open(url, timeout=2) as answer:
            return bool(answer.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def wait_ready(receiver: Receiver, timeout_s: float = READY_TIMEOUT_S) -> None:
    """Poll /readyz until it answers 200; fail early if the receiver exits."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if receiver.process.poll() is not None:
            raise BenchError(
                f"the receiver exited with {receiver.process.returncode}:\n{receiver.log_tail()}"
            )
        if _answers_ready(opener, receiver.base_url + "/readyz"):
            return
        time.sleep(0.2)
    raise BenchError(f"the receiver was not ready within {timeout_s:g} s:\n{receiver.log_tail()}")


# --------------------------------------------------------------------------- Kafka read-back


async def _records_in(bootstrap: str, topic: str) -> int:
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="outgrow-braze-bench")
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    numbers = [p["partition"] for t in described if t["topic"] == topic for p in t["partitions"]]
    if not numbers:
        raise BenchError(f"topic {topic} has no partitions")
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        ends = await consumer.end_offsets([TopicPartition(topic, n) for n in numbers])
    finally:
        await consumer.stop()
    return sum(int(offset) for offset in ends.values())


def records_in(bootstrap: str, topic: str) -> int:
    """Sum of the end offsets of every partition of `topic`."""
    return asyncio.run(asyncio.wait_for(_records_in(bootstrap, topic), 60))


# --------------------------------------------------------------------------- report


@dataclass
class BenchReport:
    """What one `bench` invocation measured and checked."""

    target: str
    tool: str
    connections: int
    duration_s: float
    warmup_s: float
    bootstrap_servers: str
    raw_topic: str
    cpus: str = "not pinned"
    runs: list[RunResult] = field(default_factory=list)
    warmup: RunResult | None = None
    records_added: int = 0

    @property
    def accepted(self) -> int:
        """2xx answers over the warm-up and every run."""
        return sum(run.accepted for run in self.all_runs)

    @property
    def all_runs(self) -> list[RunResult]:
        """The warm-up (if any) and the measured runs."""
        return ([self.warmup] if self.warmup else []) + self.runs

    @property
    def records_ok(self) -> bool:
        """True when Kafka holds at least one new record per 2xx answer."""
        return self.records_added >= self.accepted

    @property
    def clean(self) -> bool:
        """True when every request of every run got a 2xx answer."""
        return all(run.clean for run in self.all_runs)

    def median(self, name: str) -> float:
        """The median of one RunResult field over the measured runs."""
        return float(statistics.median(getattr(run, name) for run in self.runs))

    def as_dict(self) -> dict[str, Any]:
        """The summary printed by --json."""
        return {
            "target": self.target,
            "tool": self.tool,
            "producer": PRODUCER,
            "bootstrap_servers": self.bootstrap_servers,
            "connections": self.connections,
            "duration_s": self.duration_s,
            "warmup_s": self.warmup_s,
            "cpus": self.cpus,
            "runs": [asdict(run) for run in self.runs],
            "median": {name: self.median(name) for name in ("rps", "p50_ms", "p99_ms")},
            "non_2xx": sum(sum(run.non_2xx.values()) for run in self.all_runs),
            "errors": sum(run.errors for run in self.all_runs),
            "raw_topic": self.raw_topic,
            "records_added": self.records_added,
            "accepted": self.accepted,
            "records_check": "ok" if self.records_ok else "failed",
            "ok": self.clean and self.records_ok,
        }


def format_table(report: BenchReport) -> str:
    """The human-readable summary."""
    tool = "wrk" if report.tool == "wrk" else "builtin (python -m outgrow_braze_dev.loadgen)"
    lines = [
        f"bench {report.target}: tool {tool}, {report.connections} connections, "
        f"{len(report.runs)} x {report.duration_s:g} s after {report.warmup_s:g} s warm-up",
        f"1 receiver process; {PRODUCER} ({report.bootstrap_servers})",
        f"{report.cpus}, broker unpinned",
        "",
        f"{'run':<8}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'requests':>11}"
        f"{'non-2xx':>9}{'errors':>8}",
    ]
    for number, run in enumerate(report.runs, 1):
        lines.append(
            f"{number:<8}{run.rps:>10.1f}{run.p50_ms:>10.2f}{run.p99_ms:>10.2f}"
            f"{run.requests:>11}{sum(run.non_2xx.values()):>9}{run.errors:>8}"
        )
    lines.append(
        f"{'median':<8}{report.median('rps'):>10.1f}{report.median('p50_ms'):>10.2f}"
        f"{report.median('p99_ms'):>10.2f}"
    )
    verdict = "OK" if report.records_ok else "FAILED"
    found = problems(report)
    lines += [
        "",
        f"records check: {report.raw_topic} grew by {report.records_added} records for "
        f"{report.accepted} 2xx answers (warm-up included): {verdict}",
        "result: " + ("OK" if not found else f"FAILED ({len(found)} problem(s), see stderr)"),
    ]
    return "\n".join(lines)


def _labelled_runs(report: BenchReport) -> list[tuple[str, RunResult]]:
    labelled = [("warm-up", report.warmup)] if report.warmup else []
    return labelled + [(f"run {n}", run) for n, run in enumerate(report.runs, 1)]


def problems(report: BenchReport) -> list[str]:
    """Everything that makes the benchmark fail, one loud line each."""
    found = []
    for name, run in _labelled_runs(report):
        if run.non_2xx:
            found.append(f"{name}: NON-2XX ANSWERS {run.non_2xx}")
        if run.errors:
            found.append(f"{name}: {run.errors} REQUEST ERRORS (connect/read/write/timeout)")
    if not report.records_ok:
        found.append(
            f"RECORDS CHECK FAILED: {report.records_added} new records < {report.accepted} 2xx"
        )
    return found


# --------------------------------------------------------------------------- the run


def _say(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def _measure(report: BenchReport, plan: LoadPlan, runs: int) -> None:
    if report.warmup_s > 0:
        _say(f"warm-up {report.warmup_s:g} s")
        report.warmup = run_load(plan, report.warmup_s)
    for number in range(1, runs + 1):
        _say(f"run {number}/{runs}: {report.duration_s:g} s, {plan.connections} connections")
        result = run_load(plan, report.duration_s)
        _say(f"run {number}/{runs}: {result.rps:.1f} req/s, p99 {result.p99_ms:.2f} ms")
        report.runs.append(result)


def _bench_receiver(args: argparse.Namespace, tool: str) -> BenchReport:
    from outgrow_braze_dev.kafka import provide_broker

    # The receiver gets a core of its own, as a deployment would, away from the load tool.
    cpus = CpuPlan.detect()
    topic = load(TopicSettings).raw_topic
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="outgrow-bench-")))
        _say("starting the Kafka broker")
        broker = stack.enter_context(provide_broker())
        bootstrap = broker.bootstrap_servers
        _say(f"broker at {bootstrap}; starting the receiver")
        receiver = stack.enter_context(receiver_process(bootstrap, workdir, cpus.server))
        wait_ready(receiver)
        _say(f"receiver ready at {receiver.base_url}")
        body_file = write_bodies(workdir / "bodies.jsonl")
        script = workdir / "post.lua"
        script.write_text(wrk_script(body_file, receiver.webhook_path), encoding="utf-8")
        url = receiver.base_url + receiver.webhook_path
        plan = LoadPlan(tool, url, args.connections, body_file, script, cpus.load)
        report = BenchReport(
            args.target,
            tool,
            args.connections,
            args.duration,
            args.warmup,
            bootstrap,
            topic,
            cpus.describe("receiver"),
        )
        before = records_in(bootstrap, topic)
        _measure(report, plan, args.runs)
        report.records_added = records_in(bootstrap, topic) - before
        _say("stopping the receiver and the broker")
    return report


def run_receiver_bench(args: argparse.Namespace) -> int:
    """Run the receiver's benchmark; 0 when every answer was 2xx and Kafka holds every record."""
    from outgrow_braze_dev.kafka import BrokerUnavailable

    try:
        tool = choose_tool(args.tool)
        with sigterm_as_interrupt():
            report = _bench_receiver(args, tool)
    except (BenchError, BrokerUnavailable) as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(report.as_dict(), indent=2) if args.json else format_table(report))
    found = problems(report)
    for problem in found:
        print(f"bench: !!! {problem}", file=sys.stderr)
    return 1 if found else 0
