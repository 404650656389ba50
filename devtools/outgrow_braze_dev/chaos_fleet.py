"""The connector's processes in a fault test: one receiver and a few workers, each restartable.

Each runs `python -m connector COMMAND` with only the settings given here, its output appended to
a log file, and dies with this process (PR_SET_PDEATHSIG) if the fault test itself is killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import aiohttp

from outgrow_braze_dev.kafka import die_with_parent
from outgrow_braze_dev.processes import clean_env, free_port, log_tail

READY_TIMEOUT_S = 60.0
# The worker's own drain bound after SIGTERM, kept short so that stops follow one another.
WORKER_DRAIN_TIMEOUT_S = 5.0
STOP_GRACE_S = 20.0  # beyond the drain: then it is killed


class ProcessFailed(RuntimeError):
    """A process of the fault test did not start or stop as it should; the message says how."""


class Exit(Enum):
    """How a process ended when it was stopped."""

    CLEAN = "ended by the signal, or exit code 0 after SIGTERM"
    UNCLEAN = "a non-zero exit code after SIGTERM, or killed after the grace period"
    ON_ITS_OWN = "it had already exited when it was to be stopped"
    NOT_STARTED = "it was never started"

    @property
    def stopped(self) -> bool:
        """Tell whether the signal reached a running process."""
        return self in (Exit.CLEAN, Exit.UNCLEAN)


class Service:
    """One connector command as a process that can be started, signalled and started again."""

    def __init__(self, name: str, command: str, env: dict[str, str], log_file: Path) -> None:
        self.name = name
        self.command = command
        self.env = env
        self.log_file = log_file
        self.process: asyncio.subprocess.Process | None = None

    @property
    def running(self) -> bool:
        """Tell whether the process is alive."""
        return self.process is not None and self.process.returncode is None

    async def start(self) -> None:
        """Start the process (a new one each time), appending to the same log."""
        with self.log_file.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "connector", self.command,
                env=self.env, stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log,
                preexec_fn=die_with_parent(),
            )  # fmt: skip

    async def stop(self, how: signal.Signals, timeout_s: float = STOP_GRACE_S) -> Exit:
        """Send `how` and wait for the exit (SIGKILL after `timeout_s`)."""
        process = self.process
        if process is None:
            return Exit.NOT_STARTED
        if process.returncode is not None:
            return Exit.ON_ITS_OWN
        process.send_signal(how)
        try:
            await asyncio.wait_for(process.wait(), timeout_s)
        except TimeoutError:
            process.kill()
            await process.wait()
            return Exit.UNCLEAN
        clean = process.returncode == 0 or how is signal.SIGKILL
        return Exit.CLEAN if clean else Exit.UNCLEAN

    async def wait_ready(self, url: str, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Wait until `url` answers 200, or raise ProcessFailed with the end of the log."""
        async with aiohttp.ClientSession() as session:
            try:
                async with asyncio.timeout(timeout_s):
                    while not await _answers(session, url):
                        if not self.running:
                            break
                        await asyncio.sleep(0.2)
            except TimeoutError:
                pass
        if not self.running or not await _answers_once(url):
            raise ProcessFailed(f"the {self.name} did not become ready:\n{log_tail(self.log_file)}")


async def _answers(session: aiohttp.ClientSession, url: str) -> bool:
    try:
        async with session.get(url) as answer:
            return answer.status == 200
    except aiohttp.ClientError:
        return False


async def _answers_once(url: str) -> bool:
    async with aiohttp.ClientSession() as session:
        return await _answers(session, url)


@dataclass(frozen=True)
class Wiring:
    """What every process of one run is pointed at."""

    bootstrap: str
    raw_topic: str
    dlq_topic: str
    state_topic: str
    braze_url: str
    braze_api_key: str
    group: str


def _common(wiring: Wiring) -> dict[str, str]:
    env = clean_env()
    env.update(
        KAFKA_BOOTSTRAP_SERVERS=wiring.bootstrap,
        RAW_TOPIC=wiring.raw_topic,
        DLQ_TOPIC=wiring.dlq_topic,
        STATE_TOPIC=wiring.state_topic,
        LOG_LEVEL="WARNING",
    )
    return env


def receiver(wiring: Wiring, port: int, basic_auth: str, work_dir: Path) -> Service:
    """The receiver on 127.0.0.1:`port` (the same port after every restart)."""
    env = _common(wiring)
    env.update(RECEIVER_HOST="127.0.0.1", RECEIVER_PORT=str(port), WEBHOOK_BASIC_AUTH=basic_auth)
    return Service("receiver", "receiver", env, work_dir / "receiver.log")


def worker(wiring: Wiring, slot: int, work_dir: Path) -> Service:
    """Worker number `slot`, its probes on a free port, quick to give up silent members.

    Its delivery-state store lives in `work_dir` (one per slot, as a pod's emptyDir), so that a
    killed worker leaves nothing behind once the run's directory is removed.
    """
    state_dir = work_dir / f"state-{slot}"
    state_dir.mkdir(exist_ok=True)
    env = _common(wiring)
    env.update(
        STATE_DIR=str(state_dir),
        BRAZE_REST_ENDPOINT=wiring.braze_url,
        BRAZE_API_KEY=wiring.braze_api_key,
        CONSUMER_GROUP=wiring.group,
        WORKER_HOST="127.0.0.1",
        WORKER_PORT=str(free_port()),
        WORKER_DRAIN_TIMEOUT_S=f"{WORKER_DRAIN_TIMEOUT_S:g}",
        # Kafka's lowest: a killed worker's partitions move on after 6 s, not 30.
        WORKER_SESSION_TIMEOUT_S="6",
        # Back to Braze within seconds of the end of an outage or a storm.
        WORKER_RETRY_MAX_BACKOFF_S="2",
        WORKER_COMMIT_INTERVAL_S="0.5",
    )
    return Service(f"worker {slot}", "worker", env, work_dir / f"worker-{slot}.log")


def probe_url(service: Service, port_setting: str) -> str:
    """The service's /readyz, from its port setting."""
    return f"http://127.0.0.1:{service.env[port_setting]}/readyz"


async def stop_all(services: list[Service]) -> list[Exit]:
    """SIGTERM every service at once and wait for them (SIGKILL after the grace)."""
    return await asyncio.gather(*(service.stop(signal.SIGTERM) for service in services))


async def kill_all(services: list[Service]) -> None:
    """SIGKILL whatever still runs: the clean-up after a failure."""
    for service in services:
        with contextlib.suppress(ProcessLookupError):
            await service.stop(signal.SIGKILL, timeout_s=5)
