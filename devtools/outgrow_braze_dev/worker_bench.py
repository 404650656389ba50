"""`outgrow-braze bench worker`: events a second one worker delivers to Braze, and at what cost.

It starts a Kafka broker (`provide_broker()`: KAFKA_BOOTSTRAP_SERVERS, Docker, or the jars),
creates fresh topics of 12 partitions and fills the raw one with `--events` Outgrow-like leads
over `--users` people, keyed and with headers the way the receiver writes them; filling is not
measured. For each scenario it starts the Braze sandbox as a process of its own (pinned to one
core with taskset when taskset exists) with `--latency-ms` added to every answer and the
scenario's budget, then `--runs` times runs ONE worker process (`python -m connector worker`,
pinned to the other cores) in a fresh consumer group over the whole backlog.

A run is measured from the first Braze request the sandbox sees until the backlog is delivered or
`--max-seconds` have passed: events and objects from the sandbox's counters, CPU time from the
worker's /proc/PID/stat (user + system, every thread) over the same window. The worker is then
stopped with SIGTERM, drains and commits, and the run is accounted for: the group's committed
offsets must reach the end when the backlog was delivered, and Braze must have received an event
for every committed record (each lead maps to exactly one `outgrow_submission` event).

Scenarios: `open`, a budget that does not bind (3000/3s), and `binding`, one that does (300/3s,
for the sandbox and the worker alike). Figures are medians of the runs. Exit 0, or 1 when an
event was lost or the run could not be made. Everything started is stopped at the end, on error
and on Ctrl-C or SIGTERM too.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from connector.braze import RateBudget
from connector.config import TopicSettings, WorkerSettings
from connector.errors import ConfigError
from connector.signals import sigterm_as_interrupt
from outgrow_braze_dev.backlog import bench_topics, fill, fresh_state_topic, records_and_commits
from outgrow_braze_dev.loadgen import positive_float, positive_int
from outgrow_braze_dev.processes import (
    BenchError,
    CpuPlan,
    SandboxProcess,
    clean_env,
    cpu_seconds,
    free_port,
    pinned,
    sandbox_process,
)
from outgrow_braze_dev.worker_report import (
    SCENARIOS,
    Accounting,
    Counters,
    RunFigures,
    Scenario,
    ScenarioReport,
    WorkerBenchReport,
    format_number,
    format_report,
    measure,
)

MAX_EVENTS = 5_000_000
POLL_S = 0.1
FIRST_REQUEST_TIMEOUT_S = 120.0
DRAIN_TIMEOUT_S = 30.0  # the worker's own bound on finishing what it fetched, after SIGTERM
WORKER_STOP_TIMEOUT_S = DRAIN_TIMEOUT_S + 30.0
INTERRUPTED_STOP_S = 5.0


# --------------------------------------------------------------------------- command line


def scenarios_of(args: argparse.Namespace) -> list[Scenario]:
    """The scenarios chosen on the command line, in a fixed order."""
    budgets = {"open": args.open_budget, "binding": args.binding_budget}
    chosen = SCENARIOS if args.scenario == "both" else (args.scenario,)
    return [Scenario.named(name, budgets[name]) for name in chosen]


def _events(text: str) -> int:
    value = int(text)
    if not 1 <= value <= MAX_EVENTS:
        raise argparse.ArgumentTypeError(f"expected 1 to {MAX_EVENTS:,} events, got {text!r}")
    return value


def _budget(text: str) -> str:
    try:
        RateBudget.parse(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def add_worker_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of `bench worker` (the shared --runs and --json apply too)."""
    group = parser.add_argument_group("bench worker", "Options of the worker benchmark.")
    group.add_argument(
        "--events",
        type=_events,
        default=1_200_000,
        help="leads in the backlog (1200000: more than a 30 s run at 35,000/s takes)",
    )
    group.add_argument("--users", type=positive_int, default=20_000, help="people (20000)")
    group.add_argument(
        "--scenario",
        choices=[*SCENARIOS, "both"],
        default="both",
        help="open: budget not binding; binding: budget binding; both (default)",
    )
    group.add_argument(
        "--max-seconds",
        type=positive_float,
        default=30.0,
        help="longest measured window of a worker run (30); it ends early once drained",
    )
    group.add_argument("--open-budget", type=_budget, default="3000/3s", help="(3000/3s)")
    group.add_argument("--binding-budget", type=_budget, default="300/3s", help="(300/3s)")
    group.add_argument(
        "--latency-ms", type=positive_float, default=50.0, help="added Braze latency (50)"
    )
    in_flight = WorkerSettings.model_fields["worker_max_requests_in_flight"].default
    group.add_argument(
        "--in-flight",
        type=positive_int,
        default=in_flight,
        help=f"WORKER_MAX_REQUESTS_IN_FLIGHT of the worker ({in_flight}, the worker's default)",
    )


# --------------------------------------------------------------------------- processes


def sandbox_env(port: int, api_key: str, scenario: Scenario, latency_ms: float) -> dict[str, str]:
    """The sandbox's environment: loopback, a fresh key, the scenario's budget, added latency."""
    env = clean_env()
    env.update(
        SANDBOX_HOST="127.0.0.1",
        SANDBOX_PORT=str(port),
        SANDBOX_API_KEY=api_key,
        SANDBOX_TRACK_RATE_LIMIT=str(scenario.budget.requests),
        SANDBOX_TRACK_RATE_WINDOW_S=f"{scenario.budget.period_s:g}",
        SANDBOX_FAULTS=json.dumps({"latency_ms": latency_ms}),
        LOG_LEVEL="WARNING",
    )
    return env


@dataclass(frozen=True)
class WorkerPlan:
    """What one worker run is pointed at."""

    bootstrap: str
    topics: TopicSettings
    sandbox_url: str
    api_key: str
    budget_text: str
    in_flight: int
    group: str = field(default_factory=lambda: f"bench-worker-{uuid.uuid4().hex[:10]}")


def worker_env(plan: WorkerPlan, port: int) -> dict[str, str]:
    """The worker's environment: the bench topics, the sandbox, the budget, a fresh group."""
    env = clean_env()
    env.update(
        KAFKA_BOOTSTRAP_SERVERS=plan.bootstrap,
        RAW_TOPIC=plan.topics.raw_topic,
        DLQ_TOPIC=plan.topics.dlq_topic,
        STATE_TOPIC=plan.topics.state_topic,
        BRAZE_REST_ENDPOINT=plan.sandbox_url,
        BRAZE_API_KEY=plan.api_key,
        BRAZE_RATE_LIMIT=plan.budget_text,
        CONSUMER_GROUP=plan.group,
        WORKER_HOST="127.0.0.1",
        WORKER_PORT=str(port),
        WORKER_MAX_REQUESTS_IN_FLIGHT=str(plan.in_flight),
        WORKER_DRAIN_TIMEOUT_S=f"{DRAIN_TIMEOUT_S:g}",
        LOG_LEVEL="WARNING",
    )
    return env


def _http(url: str, method: str = "GET") -> dict[str, Any]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    # The sandbox's own http:// URL on 127.0.0.1 (read_first_line checked the scheme).
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)  # noqa: S310
    try:
        with opener.open(request, timeout=10) as answer:
            body: dict[str, Any] = json.loads(answer.read())
            return body
    except OSError as exc:  # URLError too: the sandbox died or hangs
        raise BenchError(f"the sandbox did not answer {method} {url}: {exc}") from None


def _tail(path: Path, lines: int = 20) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text("utf-8", "replace").strip().splitlines()[-lines:])
    return ""


@dataclass
class WorkerProcess:
    """A worker started for one run; `cpu_total_s` is known once it has exited."""

    process: subprocess.Popen[bytes]
    log_file: Path
    started_at: float
    cpu_total_s: float | None = None
    peak_rss_mb: float | None = None  # read while it runs: /proc forgets it at the exit

    def note_peak_rss(self) -> None:
        """Keep the highest resident set size the worker has had so far."""
        peak = peak_rss_mb(self.process.pid)
        if peak is not None:
            self.peak_rss_mb = max(peak, self.peak_rss_mb or 0.0)

    def check_alive(self) -> None:
        """Raise with the end of its log if the worker exited."""
        if self.process.poll() is not None:
            raise BenchError(
                f"the worker exited with {self.process.returncode}:\n{_tail(self.log_file)}"
            )

    def stop(self, timeout_s: float = WORKER_STOP_TIMEOUT_S) -> None:
        """SIGTERM, wait for the drain, SIGKILL if it will not stop; note its total CPU time."""
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        if self.process.poll() is None:
            self.note_peak_rss()
            self.process.terminate()
            if not self._drained_within(timeout_s):
                self.process.kill()
                self.process.wait()
                return
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        used = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        self.cpu_total_s = used if used > 0 else None

    def _drained_within(self, timeout_s: float) -> bool:
        """Wait for the exit, noting the peak RSS of the drain; say whether it exited."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.note_peak_rss()
            try:
                self.process.wait(POLL_S)
            except subprocess.TimeoutExpired:
                continue
            return True
        return False


def peak_rss_mb(pid: int) -> float | None:
    """A live process's peak resident set size (VmHWM) in MB, where /proc tells it."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB
    return None


@contextlib.contextmanager
def worker_process(
    plan: WorkerPlan, cpus: tuple[int, ...] | None, log_file: Path
) -> Iterator[WorkerProcess]:
    """Start `python -m connector worker` and always stop it (SIGTERM: drain, commit, exit)."""
    with log_file.open("wb") as log:
        process = subprocess.Popen(
            pinned([sys.executable, "-m", "connector", "worker"], cpus),
            env=worker_env(plan, free_port()),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        worker = WorkerProcess(process, log_file, time.monotonic())
        try:
            yield worker
        except BaseException:
            worker.stop(INTERRUPTED_STOP_S)  # nothing will be accounted for: no need to drain
            raise
        worker.stop()


# --------------------------------------------------------------------------- the run


def _say(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def _read(sandbox: SandboxProcess, worker: WorkerProcess) -> Counters:
    worker.note_peak_rss()
    cpu = cpu_seconds(worker.process.pid)
    sandbox_cpu = cpu_seconds(sandbox.process.pid)
    stats = _http(sandbox.base_url + "/_sandbox/stats")
    return Counters.from_stats(stats, time.monotonic(), cpu, sandbox_cpu)


def _first_request(sandbox: SandboxProcess, worker: WorkerProcess) -> Counters:
    deadline = time.monotonic() + FIRST_REQUEST_TIMEOUT_S
    while time.monotonic() < deadline:
        worker.check_alive()
        counters = _read(sandbox, worker)
        if counters.sent:
            return counters
        time.sleep(POLL_S)
    raise BenchError(f"no Braze request within {FIRST_REQUEST_TIMEOUT_S:g} s")


def _watch(
    sandbox: SandboxProcess, worker: WorkerProcess, backlog: int, seconds: float
) -> tuple[Counters, Counters, bool]:
    """Readings at the first request and at the drain (True) or the time limit (False)."""
    first = _first_request(sandbox, worker)
    end = first.at_s + seconds
    while True:
        time.sleep(min(POLL_S, max(end - time.monotonic(), 0.0)))
        worker.check_alive()
        last = _read(sandbox, worker)
        if last.events >= backlog:
            return first, last, True
        if last.at_s >= end:
            return first, last, False


def run_once(
    plan: WorkerPlan,
    sandbox: SandboxProcess,
    cpus: tuple[int, ...] | None,
    backlog: int,
    seconds: float,
    workdir: Path,
) -> tuple[RunFigures, Accounting]:
    """One worker over the whole backlog in a fresh group: measure, stop it, account for it."""
    budget = RateBudget.parse(plan.budget_text)
    _http(sandbox.base_url + "/_sandbox/reset", "POST")
    with (
        fresh_state_topic(plan.bootstrap, plan.topics) as topics,
        worker_process(replace(plan, topics=topics), cpus, workdir / f"{plan.group}.log") as worker,
    ):
        first, last, drained = _watch(sandbox, worker, backlog, seconds)
    figures = measure(
        first,
        last,
        budget.requests / budget.period_s,
        drained=drained,
        startup_s=first.at_s - worker.started_at,
    )
    if worker.process.returncode != 0:
        raise BenchError(
            f"the worker exited with {worker.process.returncode} after SIGTERM:\n"
            f"{_tail(worker.log_file)}"
        )
    figures = replace(figures, cpu_total_s=worker.cpu_total_s, peak_rss_mb=worker.peak_rss_mb)
    final = Counters.from_stats(_http(sandbox.base_url + "/_sandbox/stats"), 0.0, None, None)
    records, committed = records_and_commits(plan.bootstrap, plan.topics.raw_topic, plan.group)
    dead, _ = records_and_commits(plan.bootstrap, plan.topics.dlq_topic, None)
    return figures, Accounting(records, committed, final.events, dead, drained)


@dataclass(frozen=True)
class Backlog:
    """The filled raw topic every run reads from the start."""

    bootstrap: str
    topics: TopicSettings
    events: int


def _run_scenario(
    report: ScenarioReport, args: argparse.Namespace, backlog: Backlog, cpus: CpuPlan, workdir: Path
) -> None:
    scenario = report.scenario
    log_file = workdir / f"sandbox-{scenario.name}.log"
    environment = functools.partial(sandbox_env, scenario=scenario, latency_ms=args.latency_ms)
    with sandbox_process(environment, cpus.server, log_file) as sandbox:
        _say(f"scenario {scenario.name}: sandbox at {sandbox.base_url}, {scenario.budget_text}")
        for number in range(1, args.runs + 1):
            plan = WorkerPlan(
                backlog.bootstrap,
                backlog.topics,
                sandbox.base_url,
                sandbox.api_key,
                scenario.budget_text,
                args.in_flight,
            )
            run, account = run_once(
                plan, sandbox, cpus.load, backlog.events, args.max_seconds, workdir
            )
            report.runs.append(run)
            report.accounts.append(account)
            _say(
                f"scenario {scenario.name} run {number}/{args.runs}: "
                f"{run.events_per_s:,.0f} events/s, {run.requests_per_s:.1f} req/s, "
                f"{run.objects_per_request:.2f} obj/req, CPU {format_number(run.cpu_ms_per_1000)} "
                f"ms/1k, peak RSS {format_number(run.peak_rss_mb, 0)} MB, "
                f"{'drained' if run.drained else 'time limit'}"
            )


def _bench(args: argparse.Namespace) -> WorkerBenchReport:
    from outgrow_braze_dev.kafka import provide_broker

    scenarios = scenarios_of(args)
    cpus = CpuPlan.detect()
    report = WorkerBenchReport(
        args.events, args.users, args.max_seconds, args.latency_ms, args.in_flight,
        cpus.describe("sandbox", "worker") + ", broker unpinned",
    )  # fmt: skip
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="worker-bench-")))
        _say("starting the Kafka broker")
        bootstrap = stack.enter_context(provide_broker()).bootstrap_servers
        topics = stack.enter_context(bench_topics(bootstrap))
        _say(f"broker at {bootstrap}; writing {args.events:,} leads to {topics.raw_topic}")
        started = time.monotonic()
        fill(bootstrap, topics.raw_topic, args.events, args.users)
        report.fill_s = time.monotonic() - started
        _say(f"backlog written in {report.fill_s:.1f} s")
        backlog = Backlog(bootstrap, topics, args.events)
        for scenario in scenarios:
            report.scenarios.append(ScenarioReport(scenario))
            _run_scenario(report.scenarios[-1], args, backlog, cpus, workdir)
        _say("stopping the sandbox, the broker and removing the topics")
    return report


def run_worker_bench(args: argparse.Namespace) -> int:
    """Run the worker benchmark; 0 when every event is accounted for, else 1."""
    from outgrow_braze_dev.kafka import BrokerUnavailable

    started = time.monotonic()
    try:
        with sigterm_as_interrupt():
            report = _bench(args)
    except (BenchError, BrokerUnavailable, ConfigError) as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(report.as_dict(), indent=2) if args.json else format_report(report))
    found = report.problems()
    for problem in found:
        print(f"bench: !!! {problem}", file=sys.stderr)
    _say(f"done in {time.monotonic() - started:.0f} s")
    return 1 if found else 0
