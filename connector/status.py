"""`status`: the worker group's lag, the delivery state's size, the dead letters by reason, and
the services' readiness."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import IO, Any

import aiohttp
from yarl import URL

from connector.cluster import Cluster, GroupState, TopicMissing
from connector.config import KafkaSettings, TopicSettings
from connector.errors import ConnectorError
from connector.http_client import client_session, proxy_for
from connector.tables import print_table
from connector.topics import PartitionMismatch

PROBE_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class PartitionLag:
    """How far the group is behind on one partition of the raw topic."""

    partition: int
    committed: int | None  # None: never committed; the group would start at the beginning
    end: int
    lag: int


@dataclass(frozen=True)
class StateSize:
    """How many records one partition of the delivery-state topic holds: what a restore of it
    reads. Compaction brings it down towards the number of users of that partition."""

    partition: int
    records: int  # end offset minus beginning offset


@dataclass(frozen=True)
class DeadLetterCount:
    """How many dead letters share a stage and a reason, and when the latest was written."""

    stage: str
    reason: str
    count: int
    latest: str


@dataclass(frozen=True)
class Service:
    """A service's answer to `GET /readyz`."""

    name: str
    url: str
    state: str  # ready, not_ready, unreachable or unexpected
    reason: str | None = None


@dataclass(frozen=True)
class Status:
    """Everything `status` reports."""

    group: GroupState | None
    raw_topic: str
    partitions: tuple[PartitionLag, ...]
    dlq_topic: str
    dead_letters: tuple[DeadLetterCount, ...]
    services: tuple[Service, ...]
    kafka_error: str | None = None
    state_topic: str = ""
    state: tuple[StateSize, ...] | None = None  # None: the state topic does not exist

    @property
    def total_lag(self) -> int:
        """Records of the raw topic the group has not finished."""
        return sum(p.lag for p in self.partitions)

    @property
    def state_note(self) -> str | None:
        """What is wrong with the state topic, if anything: missing, or partitioned unlike raw."""
        if self.kafka_error:
            return None
        if self.state is None:
            return (
                f"state topic {self.state_topic} does not exist: "
                "`outgrow-braze topics ensure` creates it"
            )
        if len(self.state) != len(self.partitions):
            return PartitionMismatch(
                self.state_topic, len(self.state), self.raw_topic, len(self.partitions)
            ).advice()
        return None

    def state_records(self, partition: int) -> int | None:
        """The state topic's records in the partition that keeps raw `partition`'s state."""
        found = [size.records for size in self.state or () if size.partition == partition]
        return found[0] if found else None

    @property
    def exit_code(self) -> int:
        """1 when Kafka could not be read or a service says it is not ready."""
        not_ready = any(s.state == "not_ready" for s in self.services)
        return 1 if self.kafka_error or not_ready else 0

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready view, the same facts as the text."""
        return {
            "group": asdict(self.group) if self.group else None,
            "raw_topic": self.raw_topic,
            "total_lag": self.total_lag,
            "partitions": [
                {**asdict(p), "state_records": self.state_records(p.partition)}
                for p in self.partitions
            ],
            "state_topic": self.state_topic,
            "state_records_total": None
            if self.state is None
            else sum(size.records for size in self.state),
            "state_note": self.state_note,
            "dlq_topic": self.dlq_topic,
            "dead_letters_total": sum(d.count for d in self.dead_letters),
            "dead_letters": [asdict(d) for d in self.dead_letters],
            "services": [asdict(s) for s in self.services],
            "kafka_error": self.kafka_error,
        }


async def collect(
    kafka: KafkaSettings,
    topics: TopicSettings,
    group: str,
    urls: dict[str, str],
    ca_file: str | None = None,
) -> Status:
    """Read lag and dead letters from Kafka while probing the services (trusting `ca_file`'s
    CAs too, BRAZE_CA_FILE)."""
    probes = asyncio.gather(*(probe(name, url, ca_file) for name, url in urls.items()))
    try:
        async with Cluster(kafka) as cluster:
            group_state, lags = await group_lag(cluster, group, topics.raw_topic)
            sizes = await state_sizes(cluster, topics.state_topic)
            letters = await dead_letter_counts(cluster, topics.dlq_topic)
    except ConnectorError as exc:
        services = tuple(await probes)
        return Status(
            None, topics.raw_topic, (), topics.dlq_topic, (), services, str(exc), topics.state_topic
        )
    except BaseException:
        probes.cancel()
        raise
    return Status(
        group_state,
        topics.raw_topic,
        lags,
        topics.dlq_topic,
        letters,
        tuple(await probes),
        state_topic=topics.state_topic,
        state=sizes,
    )


async def group_lag(
    cluster: Cluster, group: str, topic: str
) -> tuple[GroupState, tuple[PartitionLag, ...]]:
    """The group's state and its lag on every partition of the topic."""
    partitions = await cluster.partitions(topic)
    committed = await cluster.committed(group, partitions)
    beginnings = await cluster.beginnings(partitions)
    ends = await cluster.ends(partitions)
    lags = []
    for tp in partitions:
        done, end = committed[tp.partition], ends[tp.partition]
        start = beginnings[tp.partition] if done is None else done
        lags.append(PartitionLag(tp.partition, done, end, max(end - start, 0)))
    return await cluster.group_state(group), tuple(lags)


async def state_sizes(cluster: Cluster, topic: str) -> tuple[StateSize, ...] | None:
    """The records of every partition of the state topic; None if it does not exist."""
    try:
        partitions = await cluster.partitions(topic)
    except TopicMissing:
        return None
    beginnings = await cluster.beginnings(partitions)
    ends = await cluster.ends(partitions)
    return tuple(
        StateSize(tp.partition, ends[tp.partition] - beginnings[tp.partition]) for tp in partitions
    )


async def dead_letter_counts(cluster: Cluster, topic: str) -> tuple[DeadLetterCount, ...]:
    """Count the dead-letter topic's records by stage and reason, most frequent first."""
    counts: Counter[tuple[str, str]] = Counter()
    latest: dict[tuple[str, str], int] = {}
    async for record in cluster.read_to_end(await cluster.partitions(topic)):
        headers = {key: value.decode("utf-8", "replace") for key, value in record.headers}
        key = (headers.get("dlq-stage", "?"), headers.get("dlq-reason", "?"))
        counts[key] += 1
        latest[key] = max(latest.get(key, 0), record.timestamp)
    return tuple(
        DeadLetterCount(stage, reason, count, _iso(latest[(stage, reason)]))
        for (stage, reason), count in counts.most_common()
    )


async def probe(name: str, url: str, ca_file: str | None = None) -> Service:
    """Ask a service's `/readyz`; unreachable is an answer, not an error."""
    try:
        target = URL(url.rstrip("/") + "/readyz")
        async with (
            client_session(timeout_s=PROBE_TIMEOUT_S, ca_file=ca_file) as session,
            session.get(target, proxy=proxy_for(target)) as response,
        ):
            body = await _json(response)
            status = response.status
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        return Service(name, url, "unreachable", _unreachable(exc))
    reason = body.get("reason") if isinstance(body.get("reason"), str) else None
    if status == 200:
        return Service(name, url, "ready")
    if status == 503:
        return Service(name, url, "not_ready", reason)
    return Service(name, url, "unexpected", f"HTTP {status}")


def _unreachable(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect: {exc.os_error.strerror or exc.os_error}"
    if isinstance(exc, TimeoutError):
        return f"no answer within {PROBE_TIMEOUT_S:g} s"
    return f"{type(exc).__name__}: {exc}".rstrip(": ")


async def _json(response: aiohttp.ClientResponse) -> dict[str, Any]:
    try:
        body = await response.json(content_type=None)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _iso(time_ms: int) -> str:
    moment = datetime.fromtimestamp(time_ms / 1000, UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def print_status(status: Status, stream: IO[str]) -> None:
    """The status as a few readable tables."""
    if status.kafka_error:
        stream.write(f"Kafka: {status.kafka_error}\n")
    else:
        _print_lag(status, stream)
        _print_dead_letters(status, stream)
    rows = [(s.name, s.state, s.reason, s.url) for s in status.services]
    print_table("Services", ("service", "state", "reason", "url"), rows, stream)


def _print_lag(status: Status, stream: IO[str]) -> None:
    group = status.group
    assert group is not None
    members = f"{len(group.members)} member{'' if len(group.members) == 1 else 's'}"
    title = (
        f"Group {group.group} ({group.state}, {members}) on {status.raw_topic}: "
        f"lag {status.total_lag}"
    )
    rows = [
        (p.partition, p.committed, p.end, p.lag, status.state_records(p.partition))
        for p in status.partitions
    ]
    print_table(title, ("partition", "committed", "end", "lag", "state records"), rows, stream)
    if status.state_note:
        stream.write(f"Delivery state: {status.state_note}\n")


def _print_dead_letters(status: Status, stream: IO[str]) -> None:
    total = sum(d.count for d in status.dead_letters)
    title = f"Dead letters on {status.dlq_topic}: {total}"
    rows = [(d.count, d.stage, d.reason, d.latest) for d in status.dead_letters]
    print_table(title, ("count", "stage", "reason", "latest"), rows, stream)
