"""One fault-test run: fresh topics, a sandbox, the receiver and workers, leads and faults.

The run posts its leads while the schedule (`chaos_plan.schedule`) stops workers with one signal
(SIGTERM or SIGKILL), kills a broker and the receiver and starts them again, and takes Braze down
and rate-limits it. Then it waits, within a bound, until every acknowledged lead is delivered and
every record committed, stops everything, and counts events per lead in the sandbox.
"""

from __future__ import annotations

import asyncio
import secrets
import signal
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient

from connector.cluster import Cluster
from connector.config import KafkaSettings, TopicSettings, load
from connector.status import dead_letter_counts, group_lag
from connector.topics import ensure_topics
from outgrow_braze_dev import chaos_fleet
from outgrow_braze_dev.chaos_fleet import Exit, Service, Wiring
from outgrow_braze_dev.chaos_leads import LeadStream, Posted
from outgrow_braze_dev.chaos_plan import Action, ChaosSetting, Fault, schedule
from outgrow_braze_dev.chaos_report import (
    Faults,
    Observed,
    RunFigures,
    events_per_lead,
    figures,
)
from outgrow_braze_dev.kafka_cluster import KafkaCluster
from outgrow_braze_dev.processes import free_port
from outgrow_braze_dev.sandbox.app import Sandbox
from outgrow_braze_dev.sandbox.state import SandboxConfig
from outgrow_braze_dev.sandbox.stats import TRACK_PATH
from outgrow_braze_dev.settings import SandboxSettings

POLL_S = 1.0
UNMET_EXTENSION_S = 30.0
EXTENSION_STEP_S = 0.5
RECEIVER_USER = "chaos"
# The sandbox keeps this many events per profile (its most); the tally needs every one of them.
RECENT_EVENTS = 1_000


def say(text: str) -> None:
    """One progress line on standard error."""
    print(f"chaos: {text}", file=sys.stderr, flush=True)


@dataclass
class Tallies:
    """Faults counted as they are done, and how the processes stopped ended."""

    counts: Counter[Action] = field(default_factory=Counter)
    exits: Counter[Exit] = field(default_factory=Counter)

    def done(self, action: Action) -> None:
        """Count one fault that really happened."""
        self.counts[action] += 1

    def ended(self, exits: Iterable[Exit]) -> None:
        """Count how stopped processes ended."""
        self.exits.update(exits)


@dataclass
class Stage:
    """Everything one run has running, and how to reach it."""

    cluster: KafkaCluster
    kafka: KafkaSettings
    topics: TopicSettings
    group: str
    sandbox: Sandbox
    receiver: Service
    workers: list[Service]
    stop_signal: signal.Signals
    tallies: Tallies = field(default_factory=Tallies)
    slots: list[asyncio.Lock] = field(default_factory=list)
    killed_node: int | None = None

    def __post_init__(self) -> None:
        self.slots = [asyncio.Lock() for _ in self.workers]


# --------------------------------------------------------------------------- faults


async def stop_worker(stage: Stage, number: int) -> None:
    """Stop worker `number % workers` with the run's signal and start its replacement; the slot
    is stopped again only once the replacement is ready, as a rolling restart would."""
    slot = number % len(stage.workers)
    async with stage.slots[slot]:
        worker = stage.workers[slot]
        ended = await worker.stop(stage.stop_signal)
        stage.tallies.ended([ended])
        if ended.stopped:
            stage.tallies.done(Action.STOP_WORKER)
        await worker.start()
        await worker.wait_ready(chaos_fleet.probe_url(worker, "WORKER_PORT"))


async def coordinator_node(stage: Stage) -> int:
    """The index of the node leading the group coordinator's partition (killing it moves the
    group's coordinator too)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=stage.kafka.kafka_bootstrap_servers)
    await admin.start()
    try:
        described = await admin.describe_topics(["__consumer_offsets"])
    finally:
        await admin.close()
    leaders = [p["leader"] for t in described for p in t.get("partitions", ())]
    node_ids = range(1, len(stage.cluster.nodes) + 1)
    return (leaders[0] if leaders and leaders[0] in node_ids else node_ids[-1]) - 1


async def kill_broker(stage: Stage) -> None:
    """SIGKILL the node leading the group coordinator."""
    node = await coordinator_node(stage)
    await asyncio.to_thread(stage.cluster.kill, node)
    stage.killed_node = node
    stage.tallies.done(Action.KILL_BROKER)


async def restart_broker(stage: Stage) -> None:
    """Start the killed node again and wait until it answers."""
    if stage.killed_node is not None:
        await asyncio.to_thread(stage.cluster.restart, stage.killed_node)
        stage.tallies.done(Action.RESTART_BROKER)


async def kill_receiver(stage: Stage) -> None:
    """SIGKILL the receiver."""
    ended = await stage.receiver.stop(signal.SIGKILL)
    stage.tallies.ended([ended])
    if ended.stopped:
        stage.tallies.done(Action.KILL_RECEIVER)


async def restart_receiver(stage: Stage) -> None:
    """Start the receiver again on its port."""
    await stage.receiver.start()
    stage.tallies.done(Action.RESTART_RECEIVER)


def answered(stage: Stage, status: str) -> int:
    """How many Braze requests the sandbox answered with `status` so far."""
    return int(stage.sandbox.state.stats.snapshot()["requests"].get(TRACK_PATH, {}).get(status, 0))


async def braze_window(stage: Stage, setting: str, status: str, seconds: float) -> None:
    """Keep the sandbox's outage or storm window open for `seconds`, and longer (by at most
    `UNMET_EXTENSION_S`) until a request met it: a window while delivery stalls for another
    fault would test nothing."""
    faults, before = stage.sandbox.state.faults, answered(stage, status)
    faults.configure({setting: seconds})
    await asyncio.sleep(seconds)
    give_up = time.monotonic() + UNMET_EXTENSION_S
    while answered(stage, status) == before and time.monotonic() < give_up:
        faults.configure({setting: EXTENSION_STEP_S})
        await asyncio.sleep(EXTENSION_STEP_S)


Perform = Callable[[Stage, Fault, int], Awaitable[None]]
# What each action does; `int` numbers the worker stops, so that they go round the workers.
ACTIONS: dict[Action, Perform] = {
    Action.STOP_WORKER: lambda stage, fault, number: stop_worker(stage, number),
    Action.KILL_BROKER: lambda stage, fault, number: kill_broker(stage),
    Action.RESTART_BROKER: lambda stage, fault, number: restart_broker(stage),
    Action.KILL_RECEIVER: lambda stage, fault, number: kill_receiver(stage),
    Action.RESTART_RECEIVER: lambda stage, fault, number: restart_receiver(stage),
    Action.BRAZE_OUTAGE: lambda stage, fault, number: braze_window(
        stage, "outage_s", "503", fault.lasting_s
    ),
    Action.RATE_LIMIT_STORM: lambda stage, fault, number: braze_window(
        stage, "storm_s", "429", fault.lasting_s
    ),
}


async def perform(stage: Stage, fault: Fault, number: int) -> None:
    """Do one fault."""
    say(f"{fault.at_s:5.1f} s  {fault.action.value}")
    await ACTIONS[fault.action](stage, fault, number)


async def run_schedule(stage: Stage, faults: list[Fault]) -> None:
    """Do each fault at its time; faults overlap (a worker's drain does not delay the next)."""
    start = time.monotonic()
    stops = 0
    async with asyncio.TaskGroup() as group:
        for fault in faults:
            await asyncio.sleep(max(0.0, start + fault.at_s - time.monotonic()))
            group.create_task(perform(stage, fault, stops))
            stops += fault.action is Action.STOP_WORKER


# --------------------------------------------------------------------------- the end


async def delivery_finished(stage: Stage, acknowledged: set[str]) -> bool:
    """Tell whether every acknowledged lead reached Braze and every record is committed."""
    counts = events_per_lead(stage.sandbox.state.store)
    if any(not counts[lead_id] for lead_id in acknowledged):
        return False
    async with Cluster(stage.kafka) as cluster:
        _, lags = await group_lag(cluster, stage.group, stage.topics.raw_topic)
    return sum(lag.lag for lag in lags) == 0


async def settle(stage: Stage, acknowledged: set[str], timeout_s: float) -> bool:
    """Wait until delivery finished, at most `timeout_s`; tell whether it did."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await delivery_finished(stage, acknowledged):
            return True
        await asyncio.sleep(POLL_S)
    return False


async def records_and_dead_letters(stage: Stage) -> tuple[int, int]:
    """How many records the raw topic holds, and how many went to the dead-letter topic."""
    async with Cluster(stage.kafka) as cluster:
        ends = await cluster.ends(await cluster.partitions(stage.topics.raw_topic))
        letters = await dead_letter_counts(cluster, stage.topics.dlq_topic)
    return sum(ends.values()), sum(count.count for count in letters)


def faults_seen(stage: Stage) -> Faults:
    """The faults done, and the 503s and 429s the sandbox really answered."""
    counts, exits = stage.tallies.counts, stage.tallies.exits
    return Faults(
        worker_stops=counts[Action.STOP_WORKER],
        broker_kills=counts[Action.KILL_BROKER],
        broker_restarts=counts[Action.RESTART_BROKER],
        receiver_kills=counts[Action.KILL_RECEIVER],
        receiver_restarts=counts[Action.RESTART_RECEIVER],
        braze_503s=answered(stage, "503"),
        braze_429s=answered(stage, "429"),
        unclean_exits=exits[Exit.UNCLEAN],
        exits_on_their_own=exits[Exit.ON_ITS_OWN],
    )


# --------------------------------------------------------------------------- one run


async def start_sandbox(api_key: str) -> Sandbox:
    """A sandbox on a free loopback port, keeping every event of a profile."""
    settings = load(
        SandboxSettings,
        {
            "sandbox_host": "127.0.0.1",
            "sandbox_port": 0,
            "sandbox_api_key": api_key,
            "sandbox_recent_events": RECENT_EVENTS,
        },
    )
    sandbox = Sandbox(SandboxConfig.from_settings(settings))
    await sandbox.start()
    return sandbox


async def fresh_topics(kafka: KafkaSettings, setting: ChaosSetting, tag: str) -> TopicSettings:
    """New raw, dead-letter and state topics of three replicas, created as `topics ensure` does."""
    prefix = f"chaos.{tag}.{uuid.uuid4().hex[:8]}"
    topics = load(
        TopicSettings,
        {
            "raw_topic": f"{prefix}.raw",
            "dlq_topic": f"{prefix}.dlq",
            "state_topic": f"{prefix}.state",
            "topic_partitions": setting.partitions,
            "topic_replication_factor": 3,
        },
    )
    await ensure_topics(kafka, topics)
    return topics


async def start_services(stage: Stage) -> None:
    """Start the receiver and the workers; wait until each answers its readiness probe."""
    await stage.receiver.start()
    for worker in stage.workers:
        await worker.start()
    await stage.receiver.wait_ready(chaos_fleet.probe_url(stage.receiver, "RECEIVER_PORT"))
    for worker in stage.workers:
        await worker.wait_ready(chaos_fleet.probe_url(worker, "WORKER_PORT"))


async def play(stage: Stage, stream: LeadStream, setting: ChaosSetting) -> tuple[Posted, bool]:
    """Post the leads under the faults, then wait for delivery to finish."""
    posting = asyncio.create_task(stream.post_all())
    try:
        await run_schedule(stage, schedule(setting))
    except BaseException:
        posting.cancel()
        await asyncio.gather(posting, return_exceptions=True)
        raise
    posted = await posting
    say(f"{len(posted.acknowledged):,} leads acknowledged; waiting for delivery to finish")
    return posted, await settle(stage, posted.acknowledged, setting.settle_timeout_s)


async def run_once(
    cluster: KafkaCluster, setting: ChaosSetting, stop_signal: signal.Signals, work_dir: Path
) -> RunFigures:
    """One whole run, everything it started stopped at the end, on failure too; its logs and
    the workers' state stores go in a folder of `work_dir`."""
    began = time.monotonic()
    kafka = load(KafkaSettings, {"kafka_bootstrap_servers": cluster.bootstrap_servers})
    topics = await fresh_topics(kafka, setting, stop_signal.name.lower())
    password, api_key = secrets.token_urlsafe(16), secrets.token_urlsafe(24)
    async with AsyncExitStack() as stack:
        sandbox = await start_sandbox(api_key)
        stack.push_async_callback(sandbox.stop)
        wiring = Wiring(
            cluster.bootstrap_servers,
            topics.raw_topic,
            topics.dlq_topic,
            topics.state_topic,
            sandbox.base_url,
            api_key,
            f"chaos-{uuid.uuid4().hex[:10]}",
        )
        port = free_port()
        run_dir = work_dir / stop_signal.name.lower()
        run_dir.mkdir()
        receiver = chaos_fleet.receiver(wiring, port, f"{RECEIVER_USER}:{password}", run_dir)
        workers = [chaos_fleet.worker(wiring, n, run_dir) for n in range(setting.workers)]
        stage = Stage(cluster, kafka, topics, wiring.group, sandbox, receiver, workers, stop_signal)
        stack.push_async_callback(chaos_fleet.kill_all, [receiver, *workers])
        await start_services(stage)
        say(f"{stop_signal.name} run: {setting.leads:,} leads over {setting.stream_s:.0f} s")
        stream = LeadStream(
            f"http://127.0.0.1:{port}/webhooks/outgrow",
            RECEIVER_USER,
            password,
            setting.leads,
            setting.users,
            setting.rate_per_s,
        )
        posted, finished = await play(stage, stream, setting)
        stage.tallies.ended(await chaos_fleet.stop_all([receiver, *workers]))
        counts = events_per_lead(sandbox.state.store)
        records, letters = await records_and_dead_letters(stage)
        seconds = time.monotonic() - began
        observed = Observed(records, letters, finished, seconds, faults_seen(stage))
    return figures(stop_signal.name, posted.acknowledged, posted.abandoned, counts, observed)
