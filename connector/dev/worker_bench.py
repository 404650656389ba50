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
import asyncio
import contextlib
import functools
import json
import os
import resource
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import orjson

from connector.braze import RateBudget
from connector.config import (
    ALL_GROUPS,
    DEFAULT_KEY_PATHS,
    DEFAULT_LEAD_ID_PATHS,
    KafkaSettings,
    TopicSettings,
    env_name,
    load,
)
from connector.dev.bench import BenchError, free_port, stop_process
from connector.dev.sandbox.bench import CpuPlan, cpu_seconds, pinned, read_first_line
from connector.errors import ConfigError
from connector.keys import KeyRule

TRACK_PATH = "/users/track"
PARTITIONS = 12
MAX_EVENTS = 5_000_000
FILL_BATCH = 512 * 1024
POLL_S = 0.1
FIRST_REQUEST_TIMEOUT_S = 120.0
SANDBOX_READY_TIMEOUT_S = 30.0
WORKER_STOP_TIMEOUT_S = 90.0
DRAIN_TIMEOUT_S = 60.0
HOT_USERS = 500  # repeat visitors: every fifth lead comes from one of them
EPOCH_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z, the first lead's time


# --------------------------------------------------------------------------- scenarios


@dataclass(frozen=True)
class Target:
    """One figure's goal: at least `minimum` or at most `maximum`."""

    label: str
    name: str
    minimum: float | None = None
    maximum: float | None = None

    def met(self, value: float | None) -> bool:
        """Whether a measured value reaches the goal (an unknown one does not)."""
        if value is None:
            return False
        if self.minimum is not None and value < self.minimum:
            return False
        return self.maximum is None or value <= self.maximum

    def describe(self) -> str:
        """The goal in words, e.g. `events/s >= 15000`."""
        if self.minimum is not None:
            return f"{self.label} >= {self.minimum:g}"
        return f"{self.label} <= {self.maximum:g}"


PACKED = Target("objects/request", "objects_per_request", minimum=74)
TARGETS: dict[str, tuple[Target, ...]] = {
    "open": (
        Target("events/s", "events_per_s", minimum=15_000),
        Target("CPU ms per 1,000 events", "cpu_ms_per_1000", maximum=40),
        PACKED,
    ),
    "binding": (
        Target("budget utilisation", "utilisation", minimum=0.95),
        Target("429 answers", "throttled", maximum=0),
        PACKED,
    ),
}
SCENARIOS = tuple(TARGETS)


@dataclass(frozen=True)
class Scenario:
    """A budget shared by the sandbox and the worker, and what the run should reach under it."""

    name: str
    budget: RateBudget
    budget_text: str

    @classmethod
    def named(cls, name: str, budget_text: str) -> Scenario:
        """Build a scenario; a budget unlike `3000/3s` is a ConfigError."""
        return cls(name, RateBudget.parse(budget_text), budget_text)

    @property
    def budget_per_s(self) -> float:
        """Requests a second the budget allows."""
        return self.budget.requests / self.budget.period_s

    @property
    def targets(self) -> tuple[Target, ...]:
        """The goals of this scenario."""
        return TARGETS[self.name]


def scenarios_of(args: argparse.Namespace) -> list[Scenario]:
    """The scenarios chosen on the command line, in a fixed order."""
    budgets = {"open": args.open_budget, "binding": args.binding_budget}
    chosen = SCENARIOS if args.scenario == "both" else (args.scenario,)
    return [Scenario.named(name, budgets[name]) for name in chosen]


# --------------------------------------------------------------------------- command line


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


def _positive(kind: type[int] | type[float]) -> Any:
    def parse(text: str) -> int | float:
        value = kind(text)
        if not 0 < value < float("inf"):
            raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
        return value

    return parse


def add_worker_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of `bench worker` (the shared --runs and --json apply too)."""
    group = parser.add_argument_group("bench worker", "Options of the worker benchmark.")
    group.add_argument(
        "--events", type=_events, default=500_000, help="leads in the backlog (500000)"
    )
    group.add_argument("--users", type=_positive(int), default=20_000, help="people (20000)")
    group.add_argument(
        "--scenario",
        choices=[*SCENARIOS, "both"],
        default="both",
        help="open: budget not binding; binding: budget binding; both (default)",
    )
    group.add_argument(
        "--max-seconds",
        type=_positive(float),
        default=30.0,
        help="longest measured window of a worker run (30); it ends early once drained",
    )
    group.add_argument("--open-budget", type=_budget, default="3000/3s", help="(3000/3s)")
    group.add_argument("--binding-budget", type=_budget, default="300/3s", help="(300/3s)")
    group.add_argument(
        "--latency-ms", type=_positive(float), default=50.0, help="added Braze latency (50)"
    )
    group.add_argument(
        "--in-flight",
        type=_positive(int),
        default=64,
        help="WORKER_MAX_REQUESTS_IN_FLIGHT of the worker (64)",
    )


# --------------------------------------------------------------------------- the backlog

QUIZZES: tuple[dict[str, Any], ...] = (
    {
        "calc_id": "5f7b1e2c9a3d4b0017c0ffee",
        "calc_name": "Which savings plan suits you?",
        "type": "Calculator",
        "questions": (
            ("How much do you save each month?", (150, 400, 900, "2,000+")),
            ("When do you plan to retire?", ("In 10 years", "In 20-30 years", "Not sure")),
            ("How do you feel about investment risk?", ("Low", "Moderate", "High")),
        ),
        "outcomes": ("Starter", "Growth Stage", "Wealth Builder"),
    },
    {
        "calc_id": "60a1d2e3f4b5c6d7e8f90123",
        "calc_name": "How mature is your marketing?",
        "type": "Graded Quiz",
        "questions": (
            ("Do you segment your e-mail list?", ("Yes", "No", "Partly")),
            ("How many campaigns a month?", (1, 4, 12)),
            ("Which channels do you use?", ("E-mail", "E-mail, SMS", "E-mail, SMS, Push")),
            ("Do you run A/B tests?", ("Always", "Sometimes", "Never")),
        ),
        "outcomes": ("Beginner", "Practitioner", "Expert"),
    },
    {
        "calc_id": "61b2c3d4e5f60718293a4b5c",
        "calc_name": "Find your ideal plan",
        "type": "Outcome Quiz",
        "questions": (
            ("How big is your team?", ("1-5", "6-50", "51+")),
            ("What matters most?", ("Price", "Features", "Support")),
        ),
        "outcomes": ("Basic", "Pro", "Enterprise"),
    },
)
DOMAINS = ("example.com", "example.org", "example.net", "mail.example.com")
FIRST_NAMES = ("Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken")


def user_of(index: int, users: int) -> int:
    """Who submitted lead `index`: every fifth lead a repeat visitor, the rest spread evenly."""
    hot = min(HOT_USERS, users)
    if index % 5 == 0:
        return (index // 5 * 7_919) % hot
    # The other leads, numbered 0, 1, 2, ... and spread over everyone by a large prime.
    return (index - index // 5 - 1) * 104_729 % users


@functools.lru_cache(maxsize=65_536)
def person(user: int) -> dict[str, Any]:
    """The contact details of one person, the same in each of their leads."""
    name = FIRST_NAMES[user % len(FIRST_NAMES)]
    return {
        "fullName": f"{name} Tester{user}",
        "email": f"{name.lower()}.tester{user}@{DOMAINS[user % len(DOMAINS)]}",
        "phone": f"+1 202 555 {user % 10_000:04d}",
    }


def lead(index: int, users: int) -> dict[str, Any]:
    """An Outgrow-like lead (about 750 bytes of JSON); deterministic in `index`."""
    user = user_of(index, users)
    quiz = QUIZZES[index % len(QUIZZES)]
    score = (index * 37) % 101
    created_ms = EPOCH_MS + index * 40
    document: dict[str, Any] = {
        "event": "LEADS",
        "id": f"{index:024x}",
        "calc_id": quiz["calc_id"],
        "calc_name": quiz["calc_name"],
        "type": quiz["type"],
        "created_at": f"{_day_and_time(created_ms // 1000)}.{created_ms % 1000:03d}Z",
        "user_info": person(user),
        "questions": [
            {"question": text, "answer": answers[(index // (n + 1)) % len(answers)]}
            for n, (text, answers) in enumerate(quiz["questions"])
        ],
        "results": [
            {"title": "Score", "value": score if index % 4 else str(score)},
            {"title": "Outcome", "value": quiz["outcomes"][score * len(quiz["outcomes"]) // 101]},
        ],
        "total_question": len(quiz["questions"]),
        "answered": len(quiz["questions"]),
        "url_params": {"utm_source": "newsletter", "utm_campaign": f"spring-{index % 7}"},
    }
    if user % 3 == 0:  # a third of the people arrive with an id passed in as a hidden field
        document["hidden_fields"] = {"external_id": f"crm-{user:08d}"}
    return document


@functools.lru_cache(maxsize=4_096)
def _day_and_time(epoch_s: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch_s))


RECEIVER_KEYS = KeyRule.from_settings(DEFAULT_KEY_PATHS, DEFAULT_LEAD_ID_PATHS)
Headers = list[tuple[str, bytes]]


def raw_record(index: int, users: int) -> tuple[bytes | None, bytes, Headers]:
    """Key, value and headers of one lead, as the receiver publishes it."""
    document = lead(index, users)
    headers = [
        ("content-type", b"application/json"),
        ("received-at", str(time.time_ns() // 1_000_000).encode()),
        ("source", b"default"),
        ("event-id", os.urandom(16).hex().encode()),  # the receiver's uuid4().hex, as cheaply
    ]
    return RECEIVER_KEYS.key_for(document), orjson.dumps(document), headers


class Partitioner:
    """The producer's default partitioner (murmur2 of the key), remembered per key."""

    def __init__(self, partitions: int) -> None:
        from aiokafka.partitioner import DefaultPartitioner

        self._choose = DefaultPartitioner()
        self._all = list(range(partitions))
        self._known: dict[bytes | None, int] = {}

    def __call__(self, key: bytes | None) -> int:
        found = self._known.get(key)
        if found is None:
            found = self._known[key] = self._choose(key, self._all, self._all)
        return found


async def _fill(bootstrap: str, topic: str, events: int, users: int) -> None:
    from aiokafka import AIOKafkaProducer

    # Throughput, not durability: acks=1 and whole batches per partition, built here, so that
    # filling takes seconds; the worker reads the same records either way.
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=1, max_batch_size=FILL_BATCH)
    await producer.start()
    try:
        partition_of = Partitioner(PARTITIONS)
        batches = {p: producer.create_batch() for p in range(PARTITIONS)}
        sent = []
        for index in range(events):
            key, value, headers = raw_record(index, users)
            partition = partition_of(key)
            while (
                batches[partition].append(key=key, value=value, timestamp=None, headers=headers)
                is None
            ):
                sent.append(
                    await producer.send_batch(batches[partition], topic, partition=partition)
                )
                batches[partition] = producer.create_batch()
        for partition, batch in batches.items():
            if batch.record_count():
                sent.append(await producer.send_batch(batch, topic, partition=partition))
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


def fill(bootstrap: str, topic: str, events: int, users: int) -> None:
    """Write the backlog to the raw topic."""
    asyncio.run(_fill(bootstrap, topic, events, users))


async def _create_topics(bootstrap: str) -> TopicSettings:
    from connector.topics import ensure_topics

    suffix = uuid.uuid4().hex[:10]
    kafka = load(KafkaSettings, {"kafka_bootstrap_servers": bootstrap})
    names = {"raw_topic": f"bench.raw.{suffix}", "dlq_topic": f"bench.dlq.{suffix}"}
    topics = load(TopicSettings, {**names, "topic_partitions": PARTITIONS})
    await ensure_topics(kafka, topics)
    return topics


async def _delete_topics(bootstrap: str, topics: TopicSettings) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([topics.raw_topic, topics.dlq_topic])
    finally:
        await admin.close()


@contextlib.contextmanager
def bench_topics(bootstrap: str) -> Iterator[TopicSettings]:
    """Fresh raw and dead-letter topics, deleted afterwards (they may live on a shared cluster)."""
    topics = asyncio.run(_create_topics(bootstrap))
    try:
        yield topics
    finally:
        with contextlib.suppress(Exception):
            asyncio.run(asyncio.wait_for(_delete_topics(bootstrap, topics), 30))


# --------------------------------------------------------------------------- Kafka read-back


async def _end_offsets(bootstrap: str, topic: str, group: str | None) -> tuple[int, int]:
    """(sum of end offsets, sum of the group's committed offsets) over a topic's partitions."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        async with asyncio.timeout(15):
            while not consumer.partitions_for_topic(topic):
                await consumer._client.add_topic(topic)
                await asyncio.sleep(0.1)
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        ends = await consumer.end_offsets(partitions)
        committed = 0
        if group is not None:
            for tp in partitions:
                committed += await consumer.committed(tp) or 0
        return sum(ends.values()), committed
    finally:
        await consumer.stop()


def records_and_commits(bootstrap: str, topic: str, group: str | None) -> tuple[int, int]:
    """Records in a topic and how many of them the group committed."""
    return asyncio.run(asyncio.wait_for(_end_offsets(bootstrap, topic, group), 60))


# --------------------------------------------------------------------------- processes


def _clean_env() -> dict[str, str]:
    """This environment without any connector setting, so that only ours apply."""
    ours = {env_name(name) for group in ALL_GROUPS for name in group.model_fields}
    return {k: v for k, v in os.environ.items() if k not in ours}


def sandbox_env(port: int, api_key: str, scenario: Scenario, latency_ms: float) -> dict[str, str]:
    """The sandbox's environment: loopback, a fresh key, the scenario's budget, added latency."""
    env = _clean_env()
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
    env = _clean_env()
    env.update(
        KAFKA_BOOTSTRAP_SERVERS=plan.bootstrap,
        RAW_TOPIC=plan.topics.raw_topic,
        DLQ_TOPIC=plan.topics.dlq_topic,
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


@dataclass(frozen=True)
class SandboxProcess:
    """The sandbox started for one scenario."""

    process: subprocess.Popen[bytes]
    base_url: str
    api_key: str


@contextlib.contextmanager
def sandbox_process(
    scenario: Scenario, latency_ms: float, cpus: tuple[int, ...] | None, log_file: Path
) -> Iterator[SandboxProcess]:
    """Start `python -m connector sandbox`, wait for its URL, always stop it at the end."""
    api_key, port = secrets.token_urlsafe(24), free_port()
    with log_file.open("wb") as log:
        process = subprocess.Popen(
            pinned([sys.executable, "-m", "connector", "sandbox"], cpus),
            env=sandbox_env(port, api_key, scenario, latency_ms),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
        )
        try:
            url = read_first_line(process, SANDBOX_READY_TIMEOUT_S)
            yield SandboxProcess(process, url, api_key)
        finally:
            stop_process(process)
            if process.stdout is not None:
                process.stdout.close()


def _http(url: str, method: str = "GET") -> dict[str, Any]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    # The sandbox's own http:// URL on 127.0.0.1 (read_first_line checked the scheme).
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)  # noqa: S310
    with opener.open(request, timeout=10) as answer:
        body: dict[str, Any] = json.loads(answer.read())
        return body


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

    def check_alive(self) -> None:
        """Raise with the end of its log if the worker exited."""
        if self.process.poll() is not None:
            raise BenchError(
                f"the worker exited with {self.process.returncode}:\n{_tail(self.log_file)}"
            )

    def stop(self) -> None:
        """SIGTERM, wait for the drain, SIGKILL if it will not stop; note its total CPU time."""
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(WORKER_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                return
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        used = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        self.cpu_total_s = used if used > 0 else None


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
        finally:
            worker.stop()


# --------------------------------------------------------------------------- measuring


@dataclass(frozen=True)
class Counters:
    """What the sandbox had counted, and the worker's CPU time, at one moment."""

    at_s: float
    requests: dict[str, int]
    objects: dict[str, int]
    peak_3s: int = 0
    cpu_s: float | None = None
    sandbox_cpu_s: float | None = None

    @classmethod
    def from_stats(
        cls, stats: dict[str, Any], at_s: float, cpu_s: float | None, sandbox_cpu_s: float | None
    ) -> Counters:
        """Read the `/_sandbox/stats` answer."""
        requests = {k: int(v) for k, v in stats.get("requests", {}).get(TRACK_PATH, {}).items()}
        objects = {k: int(v) for k, v in stats.get("objects_processed", {}).items()}
        peak = int(stats.get("max_track_requests_in_3s", 0))
        return cls(at_s, requests, objects, peak, cpu_s, sandbox_cpu_s)

    @property
    def sent(self) -> int:
        """Track requests answered, whatever the status."""
        return sum(self.requests.values())

    @property
    def events(self) -> int:
        """Event objects Braze applied: one per delivered lead."""
        return self.objects.get("events", 0)


def _delta(after: float | None, before: float | None) -> float | None:
    return None if after is None or before is None else after - before


@dataclass(frozen=True)
class RunFigures:
    """One run, measured from the first Braze request to the drain or the time limit."""

    seconds: float
    events: int
    requests: int
    accepted: int
    objects: int
    throttled: int
    budget_per_s: float
    drained: bool
    startup_s: float
    peak_3s: int
    cpu_s: float | None
    sandbox_cpu_s: float | None = None
    cpu_total_s: float | None = None
    statuses: dict[str, int] = field(default_factory=dict)

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    @property
    def objects_per_request(self) -> float:
        """Mean objects per request Braze applied."""
        return self.objects / self.accepted if self.accepted else 0.0

    @property
    def utilisation(self) -> float:
        """Requests sent over the requests the budget allowed in the window."""
        allowed = self.budget_per_s * self.seconds
        return self.requests / allowed if allowed > 0 else 0.0

    @property
    def cpu_ms_per_1000(self) -> float | None:
        """Worker CPU milliseconds per 1,000 events delivered."""
        if self.cpu_s is None or not self.events:
            return None
        return self.cpu_s * 1e6 / self.events

    @property
    def sandbox_core_share(self) -> float | None:
        """How busy the sandbox's core was: a value near 1 means the sandbox set the pace."""
        if self.sandbox_cpu_s is None or self.seconds <= 0:
            return None
        return self.sandbox_cpu_s / self.seconds

    def value(self, name: str) -> float | None:
        """A figure by name, as the targets and the medians ask for it."""
        found: float | int | None = getattr(self, name)
        return None if found is None else float(found)

    def as_dict(self) -> dict[str, Any]:
        """Raw counts and derived figures, JSON-ready."""
        derived = {name: self.value(name) for name in FIGURES}
        return {**asdict(self), **derived}


FIGURES = (
    "events_per_s",
    "requests_per_s",
    "objects_per_request",
    "utilisation",
    "throttled",
    "cpu_ms_per_1000",
    "sandbox_core_share",
)


def measure(
    first: Counters, last: Counters, budget_per_s: float, *, drained: bool, startup_s: float
) -> RunFigures:
    """The figures of the window between two readings."""
    statuses = {
        status: count - first.requests.get(status, 0)
        for status, count in last.requests.items()
        if count - first.requests.get(status, 0)
    }
    return RunFigures(
        seconds=last.at_s - first.at_s,
        events=last.events - first.events,
        requests=last.sent - first.sent,
        accepted=statuses.get("201", 0),
        objects=sum(last.objects.values()) - sum(first.objects.values()),
        throttled=statuses.get("429", 0),
        budget_per_s=budget_per_s,
        drained=drained,
        startup_s=startup_s,
        peak_3s=last.peak_3s,
        cpu_s=_delta(last.cpu_s, first.cpu_s),
        sandbox_cpu_s=_delta(last.sandbox_cpu_s, first.sandbox_cpu_s),
        statuses=statuses,
    )


@dataclass(frozen=True)
class Accounting:
    """Where a run left the backlog: read back after the worker stopped."""

    backlog: int
    committed: int
    delivered_events: int
    dead_letters: int
    drained: bool

    def problems(self) -> list[str]:
        """Lost or misplaced events, one line each; empty when every event is accounted for."""
        found = []
        if self.delivered_events < self.committed:
            found.append(
                f"EVENTS LOST: {self.committed:,} records committed, but Braze received only "
                f"{self.delivered_events:,} events"
            )
        if self.drained and self.committed < self.backlog:
            found.append(
                f"OFFSETS SHORT: the backlog was delivered, but the group committed only "
                f"{self.committed:,} of {self.backlog:,} records"
            )
        if self.dead_letters:
            found.append(f"{self.dead_letters:,} records went to the dead-letter topic")
        return found


@dataclass
class ScenarioReport:
    """The runs of one scenario."""

    scenario: Scenario
    runs: list[RunFigures] = field(default_factory=list)
    accounts: list[Accounting] = field(default_factory=list)

    def median(self, name: str) -> float | None:
        """The median of one figure over the runs (None when no run knows it)."""
        known = [v for v in (run.value(name) for run in self.runs) if v is not None]
        return float(statistics.median(known)) if known else None

    def verdicts(self) -> list[tuple[Target, float | None, bool]]:
        """Each target with the median it is judged on."""
        return [(t, self.median(t.name), t.met(self.median(t.name))) for t in self.scenario.targets]

    def problems(self) -> list[str]:
        """Accounting problems of every run, labelled."""
        label = self.scenario.name
        return [
            f"{label} run {number}: {problem}"
            for number, account in enumerate(self.accounts, 1)
            for problem in account.problems()
        ]

    def as_dict(self) -> dict[str, Any]:
        """The scenario as JSON-ready values."""
        return {
            "scenario": self.scenario.name,
            "budget": self.scenario.budget_text,
            "runs": [run.as_dict() for run in self.runs],
            "accounting": [asdict(account) for account in self.accounts],
            "median": {name: self.median(name) for name in FIGURES},
            "targets": [
                {"target": t.describe(), "median": value, "met": met}
                for t, value, met in self.verdicts()
            ],
        }


@dataclass
class WorkerBenchReport:
    """Everything one `bench worker` invocation measured."""

    events: int
    users: int
    max_seconds: float
    latency_ms: float
    in_flight: int
    cpus: str
    scenarios: list[ScenarioReport] = field(default_factory=list)
    fill_s: float = 0.0

    def problems(self) -> list[str]:
        """Every lost event, over all scenarios."""
        return [problem for report in self.scenarios for problem in report.problems()]

    def as_dict(self) -> dict[str, Any]:
        """The summary printed by --json."""
        return {
            "target": "worker",
            "events": self.events,
            "users": self.users,
            "partitions": PARTITIONS,
            "max_seconds": self.max_seconds,
            "latency_ms": self.latency_ms,
            "in_flight": self.in_flight,
            "cpus": self.cpus,
            "fill_s": round(self.fill_s, 1),
            "cpu_measured_from": "/proc/PID/stat of the worker process, first request to end",
            "scenarios": [report.as_dict() for report in self.scenarios],
            "ok": not self.problems(),
        }


# --------------------------------------------------------------------------- formatting


def _number(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.1f}%"


HEADER = (
    f"{'run':<8}{'seconds':>8}{'events/s':>10}{'req/s':>8}{'obj/req':>9}{'budget':>8}"
    f"{'429s':>6}{'CPU ms/1k ev':>14}{'sandbox core':>14}  end"
)


def _row(label: str, figures: dict[str, float | None], seconds: str, end: str) -> str:
    return (
        f"{label:<8}{seconds:>8}{_number(figures['events_per_s'], 0):>10}"
        f"{_number(figures['requests_per_s']):>8}{_number(figures['objects_per_request'], 2):>9}"
        f"{_percent(figures['utilisation']):>8}{_number(figures['throttled'], 0):>6}"
        f"{_number(figures['cpu_ms_per_1000']):>14}{_percent(figures['sandbox_core_share']):>14}"
        f"  {end}"
    )


def format_scenario(report: ScenarioReport) -> list[str]:
    """The table of one scenario: each run, the medians, the targets."""
    lines = [f"scenario {report.scenario.name}: budget {report.scenario.budget_text}", HEADER]
    for number, run in enumerate(report.runs, 1):
        end = "drained" if run.drained else "time limit"
        figures = {name: run.value(name) for name in FIGURES}
        lines.append(_row(str(number), figures, f"{run.seconds:.1f}", end))
    medians = {name: report.median(name) for name in FIGURES}
    lines.append(_row("median", medians, "", ""))
    for target, value, met in report.verdicts():
        lines.append(
            f"  target {target.describe()}: {_number(value, 2)} {'met' if met else 'MISSED'}"
        )
    for number, account in enumerate(report.accounts, 1):
        verdict = "OK" if not account.problems() else "FAILED"
        lines.append(
            f"  run {number}: committed {account.committed:,} of {account.backlog:,} records, "
            f"Braze received {account.delivered_events:,} events, "
            f"{account.dead_letters} dead letters: {verdict}"
        )
    return lines


def format_report(report: WorkerBenchReport) -> str:
    """The human-readable summary."""
    lines = [
        f"bench worker: 1 worker process, {report.events:,} leads over {report.users:,} people "
        f"in {PARTITIONS} partitions, Braze sandbox with +{report.latency_ms:g} ms latency",
        f"{report.cpus}; {report.in_flight} requests in flight; each run at most "
        f"{report.max_seconds:g} s from the first request, or until drained; medians of "
        f"{max((len(s.runs) for s in report.scenarios), default=0)} runs",
        "CPU: the worker's user+system time from /proc over the measured window",
    ]
    for scenario in report.scenarios:
        lines += ["", *format_scenario(scenario)]
    return "\n".join(lines)


# --------------------------------------------------------------------------- the run


def _say(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def _read(sandbox: SandboxProcess, worker: WorkerProcess) -> Counters:
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
    with worker_process(plan, cpus, workdir / f"{plan.group}.log") as worker:
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
    figures = _with_total_cpu(figures, worker.cpu_total_s)
    final = Counters.from_stats(_http(sandbox.base_url + "/_sandbox/stats"), 0.0, None, None)
    records, committed = records_and_commits(plan.bootstrap, plan.topics.raw_topic, plan.group)
    dead, _ = records_and_commits(plan.bootstrap, plan.topics.dlq_topic, None)
    return figures, Accounting(records, committed, final.events, dead, drained)


def _with_total_cpu(figures: RunFigures, total: float | None) -> RunFigures:
    values = asdict(figures)
    values["cpu_total_s"] = total
    return RunFigures(**values)


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
    with sandbox_process(scenario, args.latency_ms, cpus.sandbox, log_file) as sandbox:
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
                f"{run.objects_per_request:.2f} obj/req, CPU {_number(run.cpu_ms_per_1000)} "
                f"ms/1k, {'drained' if run.drained else 'time limit'}"
            )


def _describe_cpus(plan: CpuPlan) -> str:
    if plan.sandbox is None:
        return "not pinned (taskset not found)"
    worker = f"worker on core(s) {','.join(map(str, plan.load))}" if plan.load else "worker too"
    return f"sandbox pinned to core {plan.sandbox[0]}, {worker}, broker unpinned"


def _bench(args: argparse.Namespace) -> WorkerBenchReport:
    from connector.dev.kafka import provide_broker

    scenarios = scenarios_of(args)
    cpus = CpuPlan.detect()
    report = WorkerBenchReport(
        args.events, args.users, args.max_seconds, args.latency_ms, args.in_flight,
        _describe_cpus(cpus),
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


@contextlib.contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """Let SIGTERM unwind like Ctrl-C, so that every process started is stopped too."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_worker_bench(args: argparse.Namespace) -> int:
    """Run the worker benchmark; 0 when every event is accounted for, else 1."""
    from connector.dev.kafka import BrokerUnavailable

    started = time.monotonic()
    try:
        with _sigterm_unwinds():
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


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m connector.dev.worker_bench [options]`: the same as `bench worker`."""
    parser = argparse.ArgumentParser(prog="python -m connector.dev.worker_bench")
    parser.add_argument("--runs", type=_positive(int), default=3, help="runs per scenario (3)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_worker_arguments(parser)
    return run_worker_bench(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
