"""Kafka as the operator commands see it: topic bounds, a group's offsets and members.

Nothing here joins a consumer group: offsets are read through the admin client and written by a
consumer that carries the group id but only assigns partitions, so the group's members, if any,
are never rebalanced.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import TypeVar

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import CommitFailedError, KafkaError, for_code

from connector.config import KafkaSettings
from connector.errors import ConfigError, ConnectorError, KafkaUnavailable
from connector.kafka_security import client_kwargs, connect_failure, unreachable

T = TypeVar("T")

# Kafka's classic group states in which no member holds partitions.
INACTIVE_STATES = frozenset({"Empty", "Dead"})
_RETRY_PAUSE_S = 0.3


class GroupBusy(ConnectorError):
    """Kafka refused offsets for a group because it has live members."""


class TopicMissing(ConfigError):
    """A topic the settings name does not exist."""


@dataclass(frozen=True)
class GroupState:
    """What the group coordinator says about a group: its state and its members."""

    group: str
    state: str
    members: tuple[str, ...]  # client id @ host, one per member

    @property
    def active(self) -> bool:
        """True while some member may hold partitions and commit over what we write."""
        return self.state not in INACTIVE_STATES


class Cluster:
    """An admin client and a group-less consumer; `async with` connects and closes them."""

    def __init__(self, kafka: KafkaSettings) -> None:
        self.kafka = kafka
        self._timeout_s = kafka.kafka_request_timeout_ms / 1000
        self._admin = AIOKafkaAdminClient(**client_kwargs(kafka, "admin"))
        self._consumer = AIOKafkaConsumer(
            enable_auto_commit=False, **client_kwargs(kafka, "inspect")
        )

    async def __aenter__(self) -> Cluster:
        try:
            await self._admin.start()
            await self._consumer.start()
        except KafkaError as exc:
            await self._close()
            raise await connect_failure(self.kafka, exc) from None
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._close()

    async def _close(self) -> None:
        await self._consumer.stop()
        await self._admin.close()

    async def _call(self, call: Callable[[], Awaitable[T]]) -> T:
        """Run one Kafka call, retrying transient errors (a coordinator still loading) a while."""
        deadline = time.monotonic() + self._timeout_s
        while True:
            try:
                return await asyncio.wait_for(call(), self._timeout_s)
            except (KafkaError, TimeoutError) as exc:
                retriable = isinstance(exc, TimeoutError) or exc.retriable
                if not retriable or time.monotonic() >= deadline:
                    raise unreachable(self.kafka, exc) from None
            await asyncio.sleep(_RETRY_PAUSE_S)

    # -- topics ----------------------------------------------------------------------------------

    async def partitions(self, topic: str) -> list[TopicPartition]:
        """Every partition of a topic; TopicMissing if the topic does not exist."""
        # Asking about every topic, not this one, so a broker that auto-creates topics does not.
        described = await self._call(self._admin.describe_topics)
        for entry in described:
            if entry["topic"] == topic and not entry["error_code"]:
                numbers = sorted(p["partition"] for p in entry["partitions"])
                return [TopicPartition(topic, number) for number in numbers]
        raise TopicMissing(
            f"topic {topic} does not exist (check RAW_TOPIC / DLQ_TOPIC / STATE_TOPIC)"
        )

    async def beginnings(self, partitions: list[TopicPartition]) -> dict[int, int]:
        """The first offset still retained in each partition."""
        found = await self._call(lambda: self._consumer.beginning_offsets(partitions))
        return {tp.partition: offset for tp, offset in found.items()}

    async def ends(self, partitions: list[TopicPartition]) -> dict[int, int]:
        """The offset the next record of each partition will get."""
        found = await self._call(lambda: self._consumer.end_offsets(partitions))
        return {tp.partition: offset for tp, offset in found.items()}

    async def offsets_at(self, partitions: list[TopicPartition], time_ms: int) -> dict[int, int]:
        """The first offset of each partition with a timestamp at or after `time_ms`.

        A partition with no such record gets its end offset: nothing in it is that recent.
        """
        query = dict.fromkeys(partitions, time_ms)
        found = await self._call(lambda: self._consumer.offsets_for_times(query))
        missing = [tp for tp, hit in found.items() if hit is None]
        ends = await self.ends(missing) if missing else {}
        return {
            tp.partition: ends[tp.partition] if hit is None else hit.offset
            for tp, hit in found.items()
        }

    async def read_to_end(
        self, partitions: list[TopicPartition]
    ) -> AsyncIterator[ConsumerRecord[bytes, bytes]]:
        """Every record the partitions hold now, from the oldest retained up to their ends."""
        reader = AIOKafkaConsumer(
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **client_kwargs(self.kafka, "inspect"),
        )
        try:
            await reader.start()
            reader.assign(partitions)
            ends = await self.ends(partitions)
            left = {tp: ends[tp.partition] for tp in partitions}
            async for record in self._drain(reader, left):
                yield record
        except KafkaError as exc:
            raise unreachable(self.kafka, exc) from None
        finally:
            await reader.stop()

    async def _drain(
        self, reader: AIOKafkaConsumer, left: dict[TopicPartition, int]
    ) -> AsyncIterator[ConsumerRecord[bytes, bytes]]:
        stalled_since = time.monotonic()
        while True:
            for tp in [tp for tp, end in left.items() if await reader.position(tp) >= end]:
                del left[tp]
            if not left:
                return
            batch = await reader.getmany(*left, timeout_ms=500)
            for tp, records in batch.items():
                for record in records:
                    if record.offset < left[tp]:
                        yield record
            if batch:
                stalled_since = time.monotonic()
            elif time.monotonic() - stalled_since > self._timeout_s:
                names = ", ".join(sorted({tp.topic for tp in left}))
                raise KafkaUnavailable(f"reading {names} made no progress in {self._timeout_s} s")

    # -- consumer groups -------------------------------------------------------------------------

    async def group_state(self, group: str) -> GroupState:
        """The group's state and members, as its coordinator reports them."""
        responses = await self._call(lambda: self._admin.describe_consumer_groups([group]))
        error_code, _, state, _, _, members, *_ = responses[0].groups[0]
        if error_code:
            raise KafkaUnavailable(
                f"Kafka cannot describe group {group}: {for_code(error_code).__name__}"
            )
        return GroupState(group, state, tuple(f"{m[1]}@{m[2].lstrip('/')}" for m in members))

    async def committed(
        self, group: str, partitions: list[TopicPartition]
    ) -> dict[int, int | None]:
        """The group's committed offset of each partition; None where it never committed."""
        found = await self._call(
            lambda: self._admin.list_consumer_group_offsets(group, partitions=partitions)
        )
        offsets: dict[int, int | None] = dict.fromkeys((tp.partition for tp in partitions), None)
        for tp, meta in found.items():
            if tp in partitions and meta.offset >= 0:
                offsets[tp.partition] = meta.offset
        return offsets

    async def commit(self, group: str, topic: str, offsets: dict[int, int]) -> None:
        """Commit offsets for the group; GroupBusy while it has members, who alone may commit."""
        committer = AIOKafkaConsumer(
            group_id=group, enable_auto_commit=False, **client_kwargs(self.kafka, "offsets")
        )
        wanted = {TopicPartition(topic, p): offset for p, offset in offsets.items()}
        try:
            await committer.start()
            committer.assign(list(wanted))
            await committer.commit(wanted)
        except CommitFailedError:
            raise GroupBusy(f"Kafka refused the offsets: group {group} has live members") from None
        except KafkaError as exc:
            raise unreachable(self.kafka, exc) from None
        finally:
            await committer.stop()
