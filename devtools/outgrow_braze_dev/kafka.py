"""A real single-node Apache Kafka broker (KRaft) on loopback for tests, benchmarks and `make run`.

The broker runs from Apache Kafka's own jars, resolved once from Maven Central and cached, so only
Java 17+ and Maven are needed; a Docker engine or an existing cluster is used instead when present.
A `JarBroker` given a `Quorum` is one node of a multi-node cluster (see `kafka_cluster.py`).
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import concurrent.futures
import contextlib
import ctypes
import functools
import importlib.resources
import logging
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Literal, Protocol, Self

from aiokafka import AIOKafkaClient
from aiokafka.errors import KafkaError

KAFKA_VERSION = "4.1.1"
BOOTSTRAP_ENV = "KAFKA_BOOTSTRAP_SERVERS"

_log = logging.getLogger(__name__)

_MIN_JAVA = 17
_POM_RESOURCE = "kafka-pom.xml"
_COMPLETE_MARKER = ".complete"
_MAVEN_TIMEOUT_S = 900
_FORMAT_TIMEOUT_S = 120
_LOG_TAIL_LINES = 30
# A 2 MiB record plus its key, headers and the record batch framing must fit in one message.
_MESSAGE_MAX_BYTES = 2 * 1024 * 1024 + 64 * 1024
# Confluent 7.9 is Kafka 3.9: the newest line that testcontainers' KafkaContainer knows to boot.
_CONTAINER_IMAGE = "confluentinc/cp-kafka:7.9.0"
_CONTAINER_PORT = 9093
_PR_SET_PDEATHSIG = 1
# The optional SASL listener takes every mechanism the connector supports.
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
_PLAIN_LOGIN = "org.apache.kafka.common.security.plain.PlainLoginModule"
_SCRAM_LOGIN = "org.apache.kafka.common.security.scram.ScramLoginModule"

_INSTALL_JAVA = "install a JDK (e.g. `apt-get install openjdk-17-jre-headless`)"
_INSTALL_MAVEN = "install Maven (e.g. `apt-get install maven`)"
_OR_EXTERNAL = f"or set {BOOTSTRAP_ENV} to an existing cluster"


class BrokerUnavailable(RuntimeError):
    """No Kafka broker can be provided; the message says why in one sentence."""


class Broker(Protocol):
    """A Kafka broker that tests and tools can start, reach and stop."""

    restartable: bool

    @property
    def bootstrap_servers(self) -> str:
        """Return the `host:port` list that clients bootstrap from."""
        ...

    def start(self, timeout_s: float = ...) -> None:
        """Start the broker and return once it answers metadata requests."""
        ...

    def stop(self, timeout_s: float = ...) -> None:
        """Stop the broker."""
        ...


# --------------------------------------------------------------------------- tools and jars


def _default_cache_dir() -> Path:
    """Return the directory that holds one folder of jars per Kafka version."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    root = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"
    return root / "outgrow-braze" / "kafka"


def _find_java() -> str:
    """Return the path of a Java 17+ executable, or raise BrokerUnavailable."""
    java_home = os.environ.get("JAVA_HOME", "")
    candidate = Path(java_home, "bin", "java") if java_home else None
    java = str(candidate) if candidate and candidate.is_file() else shutil.which("java")
    if java is None:
        raise BrokerUnavailable(
            f"Java {_MIN_JAVA}+ is needed to run the local Kafka broker: "
            f"{_INSTALL_JAVA} {_OR_EXTERNAL}."
        )
    major = _java_major_version(java)
    if major is not None and major < _MIN_JAVA:
        raise BrokerUnavailable(
            f"Java {_MIN_JAVA}+ is needed to run the local Kafka broker but {java} is Java "
            f"{major}: {_INSTALL_JAVA}, point JAVA_HOME at it, {_OR_EXTERNAL}."
        )
    return java


@functools.cache
def _java_major_version(java: str) -> int | None:
    """Return the major version that `java -version` reports, or None if it cannot be read."""
    try:
        result = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', result.stderr + result.stdout)
    if match is None:
        return None
    major = int(match.group(1))
    # Java 8 and older call themselves 1.x.
    return int(match.group(2) or 0) if major == 1 else major


def _find_maven() -> str:
    """Return the path of `mvn`, or raise BrokerUnavailable."""
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerUnavailable(
            "Maven is needed once to download Apache Kafka's jars for the local broker: "
            f"{_INSTALL_MAVEN} {_OR_EXTERNAL}."
        )
    return mvn


def _pom_text(version: str) -> str:
    """Return the packaged POM with the Kafka version substituted."""
    template = importlib.resources.files(__package__ or "outgrow_braze_dev").joinpath(_POM_RESOURCE)
    text, count = re.subn(
        r"<kafka\.version>[^<]*</kafka\.version>",
        f"<kafka.version>{version}</kafka.version>",
        template.read_text(encoding="utf-8"),
    )
    if count != 1:
        raise RuntimeError(f"{_POM_RESOURCE} must declare exactly one <kafka.version> property")
    return text


def prepare_jars(version: str = KAFKA_VERSION, cache_dir: Path | None = None) -> Path:
    """Return the directory holding Apache Kafka's jars, downloading them with Maven once."""
    target = (cache_dir or _default_cache_dir()) / version
    if (target / _COMPLETE_MARKER).is_file():
        return target
    _find_java()  # Maven itself runs on Java, so name the real missing piece first.
    mvn = _find_maven()
    target.parent.mkdir(parents=True, exist_ok=True)
    _log.info("Downloading Apache Kafka %s jars with Maven into %s", version, target)
    # Resolve into a sibling temp dir and rename it whole, so an interrupted download is never
    # mistaken for a complete one.
    staging = Path(tempfile.mkdtemp(prefix=f".partial-{version}-", dir=target.parent))
    try:
        _resolve_jars(mvn, version, staging)
        _publish(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _resolve_jars(mvn: str, version: str, staging: Path) -> None:
    """Copy Kafka's runtime jars into `staging` and mark the folder complete."""
    jars = staging / "jars"
    pom = staging / "pom.xml"
    pom.write_text(_pom_text(version), encoding="utf-8")
    command = [
        mvn, "-q", "-B", "-Dstyle.color=never", "dependency:copy-dependencies",
        "-DincludeScope=runtime", f"-DoutputDirectory={jars}", "-f", str(pom),
    ]  # fmt: skip
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=_MAVEN_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise BrokerUnavailable(
            f"Maven did not finish downloading Apache Kafka {version}'s jars within "
            f"{_MAVEN_TIMEOUT_S} s: check access to Maven Central {_OR_EXTERNAL}."
        ) from exc
    if result.returncode != 0 or not (jars / f"kafka_2.13-{version}.jar").is_file():
        raise BrokerUnavailable(
            f"Maven could not download Apache Kafka {version}'s jars (exit code "
            f"{result.returncode}): check access to Maven Central {_OR_EXTERNAL}.\n"
            + _tail(result.stdout + result.stderr)
        )
    for jar in jars.iterdir():
        jar.rename(staging / jar.name)
    jars.rmdir()
    pom.unlink()
    (staging / _COMPLETE_MARKER).write_text(f"Apache Kafka {version}\n", encoding="utf-8")


def _publish(staging: Path, target: Path) -> None:
    """Move a complete staging folder to `target`, unless another process got there first."""
    if target.exists() and not (target / _COMPLETE_MARKER).is_file():
        shutil.rmtree(target)  # Left by something other than this module; never trusted.
    try:
        staging.rename(target)
    except OSError:
        # A concurrent download won the rename; its result is just as good.
        if not (target / _COMPLETE_MARKER).is_file():
            raise


def _tail(text: str, lines: int = _LOG_TAIL_LINES) -> str:
    """Return the last lines of `text`, without terminal colour codes."""
    plain = re.sub(r"\x1b\[[0-9;]*m", "", text)
    return "\n".join(plain.strip().splitlines()[-lines:])


def _error_lines(lines: list[str]) -> list[str]:
    """Return the ERROR and FATAL log lines, each with the exception message that follows it."""
    picked: list[str] = []
    for line, following in zip(lines, [*lines[1:], ""], strict=True):
        if " ERROR " in line or " FATAL " in line:
            picked.append(line)
            if following and not following.startswith("["):
                picked.append(following)
    return picked


def _log_excerpt(path: Path) -> str:
    """Return the first errors and the last lines of a broker log, about 30 lines in all."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return f"({path} was not written)"
    # The cause is logged first and then buried under the shutdown that it triggers.
    errors = _error_lines(lines)[: _LOG_TAIL_LINES // 3]
    tail = lines[-(_LOG_TAIL_LINES - len(errors)) :]
    return _tail("\n".join([*errors, "...", *tail] if errors else tail), _LOG_TAIL_LINES + 1)


# --------------------------------------------------------------------------- readiness


def _hosts(bootstrap_servers: str) -> list[tuple[str, int]]:
    """Split a `host:port,host:port` list, accepting `[::1]:port` too."""
    hosts: list[tuple[str, int]] = []
    for entry in bootstrap_servers.split(","):
        host, colon, port = entry.strip().rpartition(":")
        if not colon or host.endswith(":"):  # No port given: a bare name or IPv6 address.
            host, port = entry.strip(), "9092"
        hosts.append((host.strip("[]"), int(port)))
    return hosts


async def _accepts_tcp(bootstrap_servers: str) -> bool:
    """Tell whether any bootstrap host accepts a TCP connection."""
    for host, port in _hosts(bootstrap_servers):
        try:
            async with asyncio.timeout(2):
                _, writer = await asyncio.open_connection(host, port)
        except (OSError, TimeoutError):
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True
    return False


async def _answers_metadata(bootstrap_servers: str, timeout_s: float) -> bool:
    """Tell whether the cluster answers a metadata request naming at least one broker."""
    # A closed port makes aiokafka log an error per attempt; a plain TCP probe stays quiet.
    if not await _accepts_tcp(bootstrap_servers):
        return False
    client = AIOKafkaClient(bootstrap_servers=bootstrap_servers)
    try:
        async with asyncio.timeout(timeout_s):
            await client.bootstrap()
        return bool(client.cluster.brokers())
    except (KafkaError, OSError, TimeoutError):
        return False
    finally:
        await client.close()


_Outcome = Literal["ready", "exited", "timeout"]


async def _poll_ready(
    bootstrap_servers: str, timeout_s: float, alive: Callable[[], bool]
) -> _Outcome:
    """Retry a metadata request until it succeeds, the process dies or time runs out."""
    deadline = time.monotonic() + timeout_s
    while alive():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return "timeout"
        if await _answers_metadata(bootstrap_servers, min(remaining, 10.0)):
            return "ready" if alive() else "exited"
        await asyncio.sleep(0.2)
    return "exited"


def _wait_ready(bootstrap_servers: str, timeout_s: float, alive: Callable[[], bool]) -> _Outcome:
    """Block until the broker answers metadata requests, dies, or `timeout_s` passes."""
    abandoned = threading.Event()

    def wanted() -> bool:
        return not abandoned.is_set() and alive()

    # A private loop in a worker thread works whether or not the caller runs an event loop.
    pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="kafka-ready")
    try:
        return pool.submit(asyncio.run, _poll_ready(bootstrap_servers, timeout_s, wanted)).result()
    finally:
        # On Ctrl-C the caller must not wait for the probe loop; it notices and ends on its own.
        abandoned.set()
        pool.shutdown(wait=False)


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class Quorum:
    """The KRaft controllers of a cluster whose every node is both broker and controller.

    Node `i + 1` listens for controller traffic on `controller_ports[i]`; the voters are fixed
    (a static quorum), so every node is formatted with the same cluster id and no `--standalone`.
    """

    cluster_id: str
    controller_ports: tuple[int, ...]

    @classmethod
    def on_ports(cls, controller_ports: tuple[int, ...]) -> Quorum:
        """A quorum with a fresh cluster id over the given controller ports."""
        return cls(_cluster_id(), controller_ports)

    @property
    def size(self) -> int:
        """How many nodes the cluster has."""
        return len(self.controller_ports)

    @property
    def voters(self) -> str:
        """The `controller.quorum.voters` value: `1@127.0.0.1:PORT,2@...`."""
        return ",".join(
            f"{node}@127.0.0.1:{port}" for node, port in enumerate(self.controller_ports, 1)
        )

    @property
    def replicas(self) -> int:
        """Replicas of the internal topics and of topics created without a factor (at most 3)."""
        return min(3, self.size)

    @property
    def min_insync(self) -> int:
        """Replicas that must hold a write: all but one, so one node may be down (at most 2)."""
        return max(1, min(2, self.replicas - 1))


def server_properties(
    *,
    broker_port: int,
    controller_port: int,
    log_dir: Path,
    sasl_port: int | None = None,
    sasl_users: Mapping[str, str] | None = None,
    node_id: int = 1,
    quorum: Quorum | None = None,
) -> dict[str, str]:
    """Return the settings of a fast KRaft broker and controller on loopback.

    Alone by default; with `quorum`, node `node_id` of that cluster. With `sasl_port`, a
    SASL_PLAINTEXT listener there also takes `sasl_users` (name: password).
    """
    listeners = f"PLAINTEXT://127.0.0.1:{broker_port}"
    sasl = {} if sasl_port is None else _sasl_listener(sasl_port, sasl_users or {})
    extra = f",SASL_PLAINTEXT://127.0.0.1:{sasl_port}" if sasl else ""
    return {
        "process.roles": "broker,controller",
        "node.id": str(node_id),
        "listeners": f"{listeners}{extra},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"{listeners}{extra}",
        "inter.broker.listener.name": "PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
        + (",SASL_PLAINTEXT:SASL_PLAINTEXT" if sasl else ""),
        **_controllers(controller_port, quorum),
        "log.dirs": str(log_dir),
        "num.partitions": "1",
        "auto.create.topics.enable": "false",
        "message.max.bytes": str(_MESSAGE_MAX_BYTES),
        "replica.fetch.max.bytes": str(_MESSAGE_MAX_BYTES),
        "group.initial.rebalance.delay.ms": "0",
        **_replication(quorum.replicas if quorum else 1, quorum.min_insync if quorum else 1),
        # The cleaner's 128 MiB default buffer would take a quarter of the small heap.
        "log.cleaner.dedupe.buffer.size": str(16 * 1024 * 1024),
        **sasl,
    }


def _controllers(controller_port: int, quorum: Quorum | None) -> dict[str, str]:
    """Where a node finds the controllers: itself alone, or the cluster's fixed voters."""
    if quorum is None:
        return {"controller.quorum.bootstrap.servers": f"127.0.0.1:{controller_port}"}
    return {
        "controller.quorum.voters": quorum.voters,
        # A killed node's leaderships move after 4 s of silence rather than 9 s.
        "broker.heartbeat.interval.ms": "1000",
        "broker.session.timeout.ms": "4000",
    }


def _replication(replicas: int, min_insync: int) -> dict[str, str]:
    """Replication of new topics and the internal ones, which get one partition each so that
    the first group or transaction does not wait for 50 partitions to be created."""
    settings = {"default.replication.factor": str(replicas), "min.insync.replicas": str(min_insync)}
    for prefix in ("offsets.topic", "transaction.state.log", "share.coordinator.state.topic"):
        settings[f"{prefix}.replication.factor"] = str(replicas)
        settings[f"{prefix}.num.partitions"] = "1"
        if prefix != "offsets.topic":
            settings[f"{prefix}.min.isr"] = str(min_insync)
    return settings


def _sasl_listener(port: int, users: Mapping[str, str]) -> dict[str, str]:
    """Return the settings that let the SASL_PLAINTEXT listener check PLAIN and SCRAM logins."""
    # PLAIN users live in the listener's JAAS line; SCRAM users in the cluster metadata, written
    # when the storage is formatted (see `_scram_arguments`). No authorizer: any user may do all.
    prefix = "listener.name.sasl_plaintext."
    plain_users = " ".join(f'user_{name}="{password}"' for name, password in users.items())
    return {
        f"{prefix}sasl.enabled.mechanisms": ",".join(SASL_MECHANISMS),
        f"{prefix}plain.sasl.jaas.config": f"{_PLAIN_LOGIN} required {plain_users};",
        f"{prefix}scram-sha-256.sasl.jaas.config": f"{_SCRAM_LOGIN} required;",
        f"{prefix}scram-sha-512.sasl.jaas.config": f"{_SCRAM_LOGIN} required;",
    }


def _scram_arguments(users: Mapping[str, str]) -> list[str]:
    """Return the storage tool's `--add-scram` options creating each user for each SCRAM hash."""
    return [
        argument
        for name, password in users.items()
        for mechanism in SASL_MECHANISMS
        if mechanism.startswith("SCRAM-")
        for argument in ("--add-scram", f"{mechanism}=[name={name},password={password}]")
    ]


def render_server_properties(settings: Mapping[str, str]) -> str:
    """Return `server.properties` text for settings such as `server_properties()` gives."""
    return "".join(f"{key}={value}\n" for key, value in settings.items())


def _log4j2_properties(log_file: Path) -> str:
    """Return a log4j2 configuration that writes everything to one file."""
    return (
        # Kafka's own shutdown hook logs until the end; log4j's hook would close the file first.
        "shutdownHook = disable\n"
        "status = warn\n"
        "appender.file.type = File\n"
        "appender.file.name = file\n"
        f"appender.file.fileName = {log_file}\n"
        "appender.file.append = true\n"
        "appender.file.layout.type = PatternLayout\n"
        "appender.file.layout.pattern = [%d] %p %m (%c)%n\n"
        "rootLogger.level = INFO\n"
        "rootLogger.appenderRef.file.ref = file\n"
        "logger.request.name = kafka.request.logger\n"
        "logger.request.level = WARN\n"
    )


def _cluster_id() -> str:
    """Return a random KRaft cluster id: 16 bytes in unpadded base64url."""
    while True:
        cluster_id = base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode()
        # Kafka's own generator avoids a leading dash, which command lines take for an option.
        if not cluster_id.startswith("-"):
            return cluster_id


def _free_ports(count: int) -> list[int]:
    """Return `count` distinct loopback ports that are free right now."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


def _stored_ports(properties: Path) -> tuple[int, int] | None:
    """Return the broker and controller ports written in an existing `server.properties`."""
    broker = _stored_port(properties, "PLAINTEXT")
    controller = _stored_port(properties, "CONTROLLER")
    if broker is None or controller is None:
        return None
    return broker, controller


def _stored_port(properties: Path, listener: str) -> int | None:
    """Return the port of one listener written in an existing `server.properties`."""
    try:
        text = properties.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    # The listener's name starts the value or follows a comma, so PLAINTEXT is not SASL_PLAINTEXT.
    found = re.search(rf"^listeners=(?:.*,)?{listener}://[^:,]+:(\d+)", text, re.MULTILINE)
    return None if found is None else int(found.group(1))


def _jvm_options(heap_mb: int, log4j_config: Path) -> list[str]:
    """Return JVM flags for a small broker sharing two cores with the tests."""
    return [
        f"-Xms{heap_mb}m",
        f"-Xmx{heap_mb}m",
        # Kafka's own defaults from kafka-server-start.sh: short G1 pauses keep latency flat.
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-XX:InitiatingHeapOccupancyPercent=35",
        "-XX:+ExplicitGCInvokesConcurrent",
        # A broker that ran out of heap is broken; dying makes the failure visible at once.
        "-XX:+ExitOnOutOfMemoryError",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={log4j_config}",
    ]


def die_with_parent() -> Callable[[], None] | None:
    """Return a pre-exec hook that kills the child when this process dies, where Linux allows."""
    if sys.platform != "linux":
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL))
        if os.getppid() != parent:  # The parent died before the signal was armed.
            os._exit(1)

    return hook


_Jvm = subprocess.Popen[bytes]
_SpawnRequest = tuple[Callable[[], _Jvm], concurrent.futures.Future[_Jvm]]


@functools.cache
def _spawn_requests() -> queue.SimpleQueue[_SpawnRequest]:
    """Return the queue of the thread that forks broker JVMs, starting that thread once."""
    requests: queue.SimpleQueue[_SpawnRequest] = queue.SimpleQueue()
    threading.Thread(
        target=_serve_spawns, args=(requests,), name="kafka-spawner", daemon=True
    ).start()
    return requests


def _serve_spawns(requests: queue.SimpleQueue[_SpawnRequest]) -> None:
    """Run spawn requests forever."""
    while True:
        popen, future = requests.get()
        try:
            future.set_result(popen())
        except BaseException as exc:  # Handed to the caller, whatever it is.
            future.set_exception(exc)


def _popen_from_lasting_thread(popen: Callable[[], _Jvm]) -> _Jvm:
    """Call `popen` on a daemon thread that lives exactly as long as this process."""
    # PR_SET_PDEATHSIG fires when the thread that forked the child exits, not the process; a
    # start from asyncio.to_thread or a pytest worker thread must not die with that thread.
    future: concurrent.futures.Future[_Jvm] = concurrent.futures.Future()
    _spawn_requests().put((popen, future))
    return future.result()


# --------------------------------------------------------------------------- brokers


class StartedWith:
    """`with` starts it (closing what started if that fails) and closes it at the end."""

    def start(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class JarBroker(StartedWith):
    """A Kafka broker and KRaft controller in one local JVM, restartable on the same ports."""

    restartable = True

    def __init__(
        self,
        *,
        port: int = 0,
        version: str = KAFKA_VERSION,
        heap_mb: int = 512,
        data_dir: Path | None = None,
        sasl_users: Mapping[str, str] | None = None,
        quorum: Quorum | None = None,
        node_id: int = 1,
    ) -> None:
        """Describe the broker; `sasl_users` (name: password) adds a SASL_PLAINTEXT listener.

        With `quorum`, it is node `node_id` of that cluster, on that node's controller port.
        """
        if quorum is not None and not 1 <= node_id <= quorum.size:
            raise ValueError(f"node {node_id} is not one of the quorum's {quorum.size} nodes")
        self._quorum = quorum
        self._node_id = node_id
        self._port = port
        self._version = version
        self._heap_mb = heap_mb
        self._owns_data_dir = data_dir is None
        self.data_dir = data_dir or Path(tempfile.mkdtemp(prefix="outgrow-braze-kafka-"))
        self.log_path = self.data_dir / "broker.log"
        self._ports: tuple[int, int] | None = None
        self._sasl_users = dict(sasl_users or {})
        self._sasl_port: int | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._lock = threading.RLock()
        atexit.register(self.close)

    @property
    def bootstrap_servers(self) -> str:
        """Return `127.0.0.1:PORT`, fixed from the first start on."""
        if self._ports is None:
            raise RuntimeError("JarBroker.bootstrap_servers is known once start() has run")
        return f"127.0.0.1:{self._ports[0]}"

    @property
    def sasl_bootstrap_servers(self) -> str:
        """Return `127.0.0.1:PORT` of the SASL_PLAINTEXT listener, fixed from the first start on."""
        if self._sasl_port is None:
            raise RuntimeError("JarBroker.sasl_bootstrap_servers needs sasl_users and start()")
        return f"127.0.0.1:{self._sasl_port}"

    @property
    def running(self) -> bool:
        """Tell whether the broker's JVM is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self, timeout_s: float = 120) -> None:
        """Start the JVM (formatting storage the first time) and wait until it answers."""
        with self._lock:
            if self.running:
                return
            java = _find_java()
            jars = prepare_jars(self._version)
            properties = self._write_config()
            # The clock starts after the one-time jar download, which has its own timeout.
            deadline = time.monotonic() + timeout_s
            self._format_once(java, jars, properties)
            self._spawn(java, jars, properties)
            self._await_ready(max(deadline - time.monotonic(), 1.0))

    def stop(self, timeout_s: float = 30) -> None:
        """Send SIGTERM for a controlled shutdown; kill the JVM if it outlives `timeout_s`."""
        with self._lock:
            process = self._process
            if process is None:
                return
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout_s)
                except subprocess.TimeoutExpired:
                    _log.warning("Kafka did not stop within %s s; killing it", timeout_s)
                    process.kill()
                    process.wait()
            # Forgotten only once dead, so an interrupted stop is finished by close() at exit.
            self._process = None

    def kill(self) -> None:
        """End the JVM at once with SIGKILL, as a crash or an out-of-memory kill would."""
        with self._lock:
            process, self._process = self._process, None
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()

    def close(self) -> None:
        """Stop the broker and delete its data if this object created the directory."""
        self.stop()
        atexit.unregister(self.close)
        if self._owns_data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    @property
    def _kraft_dir(self) -> Path:
        return self.data_dir / "kraft"

    def _write_config(self) -> Path:
        """Write `server.properties` and the log4j2 file, choosing ports on the first call."""
        properties = self.data_dir / "server.properties"
        if self._ports is None:
            self._ports = self._choose_ports(properties)
        if self._sasl_users and self._sasl_port is None:
            self._sasl_port = self._choose_sasl_port(properties)
        broker_port, controller_port = self._ports
        self.data_dir.mkdir(parents=True, exist_ok=True)
        properties.write_text(
            render_server_properties(
                server_properties(
                    broker_port=broker_port,
                    controller_port=controller_port,
                    log_dir=self._kraft_dir,
                    sasl_port=self._sasl_port,
                    sasl_users=self._sasl_users,
                    node_id=self._node_id,
                    quorum=self._quorum,
                )
            ),
            encoding="utf-8",
        )
        self._log4j_config.write_text(_log4j2_properties(self.log_path), encoding="utf-8")
        return properties

    def _choose_ports(self, properties: Path) -> tuple[int, int]:
        """Reuse the ports of an already formatted data dir, else pick free ones."""
        stored = _stored_ports(properties) if self._formatted else None
        if stored is not None:
            if self._port not in (0, stored[0]):
                raise ValueError(
                    f"{self.data_dir} holds a broker on port {stored[0]}, not {self._port}"
                )
            return stored
        if self._quorum is not None:
            controller_port = self._quorum.controller_ports[self._node_id - 1]
            taken = (controller_port, *self._quorum.controller_ports)
            return self._port or next(p for p in _free_ports(4) if p not in taken), controller_port
        if self._port == 0:
            broker_port, controller_port = _free_ports(2)
            return broker_port, controller_port
        controller_port = next(p for p in _free_ports(2) if p != self._port)
        return self._port, controller_port

    def _choose_sasl_port(self, properties: Path) -> int:
        """Reuse the SASL port of an already formatted data dir, else pick a free one."""
        stored = _stored_port(properties, "SASL_PLAINTEXT") if self._formatted else None
        taken = self._ports or ()
        return stored or next(p for p in _free_ports(3) if p not in taken)

    @property
    def _formatted(self) -> bool:
        return (self._kraft_dir / "meta.properties").is_file()

    @property
    def _log4j_config(self) -> Path:
        return self.data_dir / "log4j2.properties"

    def _format_once(self, java: str, jars: Path, properties: Path) -> None:
        """Format the KRaft log dir unless already done: a standalone controller, or one of the
        quorum's fixed voters under the quorum's cluster id."""
        if self._formatted:
            return
        shutil.rmtree(self._kraft_dir, ignore_errors=True)  # A format that died half-way.
        # A one-shot tool: the C1 compiler and serial GC start faster, and nothing is measured here.
        command = [
            java, "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC",
            f"-Dlog4j2.configurationFile={self._log4j_config}", "-cp", f"{jars}/*",
            "kafka.tools.StorageTool", "format", *self._quorum_arguments(),
            "-c", str(properties), *_scram_arguments(self._sasl_users),
        ]  # fmt: skip
        with self.log_path.open("ab") as log:
            result = subprocess.run(
                command, stdout=log, stderr=log, timeout=_FORMAT_TIMEOUT_S, check=False
            )
        if result.returncode != 0:
            raise BrokerUnavailable(
                f"Formatting the local Kafka broker's storage failed with exit code "
                f"{result.returncode}; see {self.log_path}:\n{_log_excerpt(self.log_path)}"
            )

    def _quorum_arguments(self) -> list[str]:
        """The storage tool's cluster id, and `--standalone` for a broker on its own."""
        if self._quorum is None:
            return ["--standalone", "-t", _cluster_id()]
        return ["-t", self._quorum.cluster_id]

    def _spawn(self, java: str, jars: Path, properties: Path) -> None:
        """Launch the broker JVM in its own session, its output appended to the log file."""
        command = [
            java,
            *_jvm_options(self._heap_mb, self._log4j_config),
            "-cp",
            f"{jars}/*",
            "kafka.Kafka",
            str(properties),
        ]
        _log.debug("Starting Kafka: %s", " ".join(command))
        with self.log_path.open("ab") as log:
            # A session of its own keeps the terminal's Ctrl-C away from the JVM: this process
            # decides when Kafka stops, and does it cleanly.
            self._process = _popen_from_lasting_thread(
                lambda: subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    cwd=self.data_dir,
                    start_new_session=True,
                    preexec_fn=die_with_parent(),
                )
            )

    def _await_ready(self, timeout_s: float) -> None:
        """Wait for metadata answers; on failure stop the JVM and raise with the log's tail."""
        outcome = _wait_ready(self.bootstrap_servers, timeout_s, lambda: self.running)
        if outcome == "ready":
            return
        process = self._process
        self.stop(timeout_s=5)
        if outcome == "exited" and process is not None:
            reason = f"exited with code {process.returncode} while starting"
        else:
            reason = f"did not answer on {self.bootstrap_servers} within {timeout_s:.0f} s"
        raise BrokerUnavailable(
            f"The local Kafka broker {reason}; errors and last lines of {self.log_path}:\n"
            + _log_excerpt(self.log_path)
        )


class ExternalBroker:
    """An existing cluster named by KAFKA_BOOTSTRAP_SERVERS; starting it only waits for it."""

    restartable = False

    def __init__(self, bootstrap_servers: str | None = None) -> None:
        servers = bootstrap_servers or os.environ.get(BOOTSTRAP_ENV, "").strip()
        if not servers:
            raise BrokerUnavailable(f"{BOOTSTRAP_ENV} is not set, so there is no external Kafka.")
        self._bootstrap_servers = servers

    @property
    def bootstrap_servers(self) -> str:
        """Return the configured bootstrap list."""
        return self._bootstrap_servers

    def start(self, timeout_s: float = 60) -> None:
        """Wait until the cluster answers a metadata request."""
        if _wait_ready(self._bootstrap_servers, timeout_s, lambda: True) != "ready":
            raise BrokerUnavailable(
                f"The Kafka cluster at {self._bootstrap_servers} (from {BOOTSTRAP_ENV}) did not "
                f"answer within {timeout_s:.0f} s: start it or unset {BOOTSTRAP_ENV}."
            )

    def stop(self, timeout_s: float = 30) -> None:
        """Leave the external cluster running."""


class ContainerBroker:
    """A KRaft broker in a Docker container through testcontainers (Docker engines only)."""

    restartable = False

    def __init__(self, *, port: int = 0, image: str = _CONTAINER_IMAGE) -> None:
        self._port = port
        self._image = image
        self._container: Any = None

    @property
    def bootstrap_servers(self) -> str:
        """Return the mapped `host:port` of the container's listener."""
        if self._container is None:
            raise RuntimeError("ContainerBroker.bootstrap_servers is known once start() has run")
        return str(self._container.get_bootstrap_server())

    def start(self, timeout_s: float = 120) -> None:
        """Run the container and wait until the broker answers a metadata request."""
        from testcontainers.community.kafka import KafkaContainer

        container = self._container = KafkaContainer(self._image).with_kraft()
        settings = {
            "KAFKA_AUTO_CREATE_TOPICS_ENABLE": "false",
            "KAFKA_NUM_PARTITIONS": "1",
            "KAFKA_MESSAGE_MAX_BYTES": str(_MESSAGE_MAX_BYTES),
            "KAFKA_REPLICA_FETCH_MAX_BYTES": str(_MESSAGE_MAX_BYTES),
            "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
            "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
            "KAFKA_HEAP_OPTS": "-Xms512m -Xmx512m",
        }
        for key, value in settings.items():
            container.with_env(key, value)
        if self._port:
            container.with_bind_ports(_CONTAINER_PORT, self._port)
        try:
            container.start(timeout=int(timeout_s))
        except BaseException:
            self.stop()
            raise
        if _wait_ready(self.bootstrap_servers, timeout_s, lambda: True) != "ready":
            self.stop()
            raise BrokerUnavailable(f"The Kafka container did not answer within {timeout_s:.0f} s.")

    def stop(self, timeout_s: float = 30) -> None:
        """Remove the container."""
        container, self._container = self._container, None
        if container is not None:
            container.stop()


def docker_available() -> bool:
    """Tell, within about two seconds, whether a Docker engine answers."""
    if not os.environ.get("DOCKER_HOST") and not Path("/var/run/docker.sock").exists():
        return False
    try:
        import docker

        client = docker.from_env(timeout=2)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # Any failure at all means "no usable engine"; never let it escape.
        _log.debug("Docker engine did not answer", exc_info=True)
        return False


def _choose_broker(*, allow_external: bool) -> Broker:
    """Pick an existing cluster, else a container, else a JVM from the jars."""
    if allow_external and os.environ.get(BOOTSTRAP_ENV, "").strip():
        return ExternalBroker()
    if docker_available():
        return ContainerBroker()
    return JarBroker()


def _dispose(broker: Broker) -> None:
    """Stop a broker and release what it owns."""
    if isinstance(broker, JarBroker):
        broker.close()
    else:
        broker.stop()


@contextmanager
def provide_broker(*, allow_external: bool = True) -> Iterator[Broker]:
    """Start the best available broker, yield it, and stop it afterwards."""
    broker = _choose_broker(allow_external=allow_external)
    try:
        broker.start()
        yield broker
    finally:
        _dispose(broker)


# --------------------------------------------------------------------------- command line


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    """Turn SIGTERM into the same KeyboardInterrupt that Ctrl-C raises."""
    raise KeyboardInterrupt


@contextmanager
def _signal_handlers(handler: Callable[[int, FrameType | None], Any] | int) -> Iterator[None]:
    """Handle SIGINT and SIGTERM with `handler` inside the block."""
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _liveness(broker: Broker) -> Callable[[], bool]:
    """Return a check of whether the broker is still up, as far as this process can tell."""
    if isinstance(broker, JarBroker):
        return lambda: broker.running
    return lambda: True


def _serve_until_interrupted(broker: Broker) -> int:
    """Start the broker, announce it, and block until a signal (0) or its death (1)."""
    log_hint = f"; broker log: {broker.log_path}" if isinstance(broker, JarBroker) else ""
    try:
        broker.start()
        print(f"{BOOTSTRAP_ENV}={broker.bootstrap_servers}", flush=True)
        print(
            f"Apache Kafka is ready at {broker.bootstrap_servers}{log_hint}. "
            "Press Ctrl-C to stop it.",
            file=sys.stderr,
            flush=True,
        )
        alive = _liveness(broker)
        while alive():
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("Stopping Kafka...", file=sys.stderr, flush=True)
        return 0
    print(f"The local Kafka broker stopped on its own{log_hint}.", file=sys.stderr)
    return 1


def _serve(port: int) -> int:
    """Run a local broker (Docker if it answers, else jars) until SIGINT or SIGTERM."""
    broker: Broker = ContainerBroker(port=port) if docker_available() else JarBroker(port=port)
    with _signal_handlers(_raise_interrupt):
        try:
            return _serve_until_interrupted(broker)
        finally:
            # A second Ctrl-C must not cut the controlled shutdown short; stop() kills on timeout.
            with _signal_handlers(signal.SIG_IGN):
                _dispose(broker)


def run_local_kafka(*, port: int = 0, prepare_only: bool = False) -> int:
    """Run `outgrow-braze local-kafka`: serve a broker until interrupted, or just fetch its jars."""
    try:
        if prepare_only:
            jars = prepare_jars()
            print(f"Apache Kafka {KAFKA_VERSION} jars are ready in {jars}", file=sys.stderr)
            return 0
        return _serve(port)
    except BrokerUnavailable as exc:
        print(exc, file=sys.stderr)
        return 1
