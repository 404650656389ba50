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
import shutil
import socket
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
from outgrow_braze_dev.loadgen import positive_float, positive_int

TARGETS = ["receiver", "sandbox", "replay", "worker"]
TOOLS = ["auto", "wrk", "builtin"]
USERS = 10_000
WRK_THREADS = 1
REQUEST_TIMEOUT_S = 10
READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0
WEBHOOK_PATH = "/webhooks/outgrow"
WRK_MARKER = "BENCH_RESULT "
PRODUCER = "acks=all, idempotent producer, local broker"


class BenchError(RuntimeError):
    """The benchmark could not be run; the message says why."""


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


def choose_tool(requested: str) -> str:
    """Resolve `auto` to wrk when it is installed, else the built-in generator."""
    if requested == "auto":
        return "wrk" if shutil.which("wrk") else "builtin"
    if requested == "wrk" and not shutil.which("wrk"):
        raise BenchError("wrk is not installed (apt-get install wrk), use --tool builtin")
    return requested


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


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class RunResult:
    """One run of the load, whichever tool produced it."""

    requests: int
    duration_s: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    non_2xx: dict[str, int] = field(default_factory=dict)
    errors: int = 0

    @property
    def accepted(self) -> int:
        """Answers that were 2xx."""
        return self.requests - sum(self.non_2xx.values())

    @property
    def clean(self) -> bool:
        """True when every request got a 2xx answer."""
        return not self.non_2xx and self.errors == 0


def parse_loadgen_output(stdout: str) -> RunResult:
    """Read the JSON line printed by `python -m outgrow_braze_dev.loadgen`."""
    lines = [line for line in stdout.splitlines() if line.strip()]
    if not lines:
        raise BenchError("the load generator printed nothing")
    data = json.loads(lines[-1])
    return RunResult(
        requests=int(data["requests"]),
        duration_s=float(data["duration_s"]),
        rps=float(data["rps"]),
        p50_ms=float(data["p50_ms"]),
        p90_ms=float(data["p90_ms"]),
        p99_ms=float(data["p99_ms"]),
        max_ms=float(data["max_ms"]),
        non_2xx={str(k): int(v) for k, v in data["non_2xx"].items()},
        errors=int(data["errors"]),
    )


def parse_wrk_output(stdout: str) -> RunResult:
    """Read the line that the generated Lua script's `done()` prints after wrk's own report."""
    found = [line for line in stdout.splitlines() if line.startswith(WRK_MARKER)]
    if not found:
        raise BenchError("wrk printed no result line; is the Lua script in use?")
    data = json.loads(found[-1][len(WRK_MARKER) :])
    duration_s = data["duration_us"] / 1e6
    errors = sum(data[name] for name in ("connect", "read", "write", "timeout"))
    # wrk counts answers with a status above 399 as "status" errors; it cannot tell which.
    non_2xx = {"4xx/5xx": int(data["status"])} if data["status"] else {}
    return RunResult(
        requests=int(data["requests"]),
        duration_s=round(duration_s, 3),
        rps=round(data["requests"] / duration_s, 1) if duration_s > 0 else 0.0,
        p50_ms=data["p50_us"] / 1000.0,
        p90_ms=data["p90_us"] / 1000.0,
        p99_ms=data["p99_us"] / 1000.0,
        max_ms=data["max_us"] / 1000.0,
        non_2xx=non_2xx,
        errors=int(errors),
    )


# --------------------------------------------------------------------------- load tools

# The `done()` hook both wrk scripts end with: one marked JSON line with counts and latencies.
WRK_REPORT = """\
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{marker}{{"requests":%.0f,"duration_us":%.0f,"status":%.0f,"connect":%.0f,'
    .. '"read":%.0f,"write":%.0f,"timeout":%.0f,"p50_us":%.0f,"p90_us":%.0f,'
    .. '"p99_us":%.0f,"max_us":%.0f}}\\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


WRK_SCRIPT = (
    """\
-- Generated by outgrow_braze_dev.bench: POST each body of the file in turn, report as JSON.
local body_file = [==[{body_file}]==]
local path = [==[{path}]==]
local prepared = {{}}
local count = 0
local index = 0

function init(args)
  local headers = {{ ["Content-Type"] = "application/json" }}
{authorization}  for line in io.lines(body_file) do
    if #line > 0 then
      count = count + 1
      prepared[count] = wrk.format("POST", path, headers, line)
    end
  end
end

function request()
  index = index % count + 1
  return prepared[index]
end
{stop_after}
"""
    + WRK_REPORT
)

WRK_BEARER = """\
  headers["Authorization"] = "Bearer " .. [==[{token}]==]
"""

# Defining response() makes wrk read every answer, so only a run with a limit has one.
WRK_STOP_AFTER = """
local answered = 0

function response(status, headers, body)
  answered = answered + 1
  if answered >= {limit} then wrk.thread:stop() end
end
"""


def wrk_script(
    body_file: Path, path: str, *, bearer: str | None = None, stop_after: int | None = None
) -> str:
    """The Lua script that makes wrk post the bodies of `body_file` to `path`, with a bearer
    token if given, stopping each thread after `stop_after` answers if given."""
    for text in (str(body_file), path, bearer or ""):
        if "]==]" in text or "\n" in text:
            raise BenchError(f"cannot quote {text!r} in a Lua script")
    return WRK_SCRIPT.format(
        body_file=body_file,
        path=path,
        marker=WRK_MARKER,
        authorization="" if bearer is None else WRK_BEARER.format(token=bearer),
        stop_after="" if stop_after is None else WRK_STOP_AFTER.format(limit=stop_after),
    )


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
    command = load_command(plan, seconds)
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=seconds + REQUEST_TIMEOUT_S + 60,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise BenchError(f"{command[0]} did not finish in time") from None
    if done.returncode != 0:
        raise BenchError(f"{plan.tool} failed ({done.returncode}): {_tail(done.stderr)}")
    parse = parse_wrk_output if plan.tool == "wrk" else parse_loadgen_output
    return parse(done.stdout)


# --------------------------------------------------------------------------- cores


@dataclass(frozen=True)
class CpuPlan:
    """Which cores the server under test and the load may use (None: not pinned)."""

    server: tuple[int, ...] | None
    load: tuple[int, ...] | None

    @classmethod
    def detect(cls) -> CpuPlan:
        """One core for the server and the rest for the load, when taskset exists."""
        if not shutil.which("taskset"):
            return cls(None, None)
        cpus = tuple(sorted(os.sched_getaffinity(0)))
        return cls(cpus[:1], cpus[1:] or None)

    def describe(self, server: str = "sandbox", load: str = "load") -> str:
        """A short sentence for the report, naming the server and the load as given."""
        if self.server is None:
            return "not pinned (taskset not found)"
        where = f"on cores {_cores(self.load)}" if self.load else "unpinned, same core"
        return f"{server} pinned to core {_cores(self.server)}, {load} {where}"


def _cores(cpus: tuple[int, ...] | None) -> str:
    return ",".join(str(cpu) for cpu in cpus or ())


def pinned(command: list[str], cpus: tuple[int, ...] | None) -> list[str]:
    """The command run under `taskset -c` when cores are given."""
    return ["taskset", "-c", _cores(cpus), *command] if cpus else command


# --------------------------------------------------------------------------- receiver process


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _tail(text: str, lines: int = 20) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


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
        with contextlib.suppress(OSError):
            return _tail(self.log_file.read_text(encoding="utf-8", errors="replace"))
        return ""


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
        process = subprocess.Popen(
            pinned([sys.executable, "-m", "connector", "receiver"], cores),
            env=receiver_env(bootstrap, port, token),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            yield Receiver(process, port, token, log_file)
        finally:
            stop_process(process)


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, wait, then SIGKILL if it would not stop."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


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
