"""Intake: fetch records, map them, queue what they give; pause fetching while too much waits."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition

from connector.batching import Item, UserQueue
from connector.braze_state import Halt
from connector.deadletter import Reason, SourceRecord
from connector.dispatch import Inflow
from connector.mapping import BrazeUpdate, Filtered, Mapping, MappingFailure, map_record
from connector.offsets import PartitionOffsets, Trackers
from connector.outcomes import Outcomes
from connector.payloads import JSON

YIELD_EVERY = 100  # records mapped between two turns of the event loop
FETCH_RECORDS = 2_000  # records a fetch returns at most
RESUME_AT = 0.8  # of WORKER_MAX_PENDING_RECORDS: a paused intake resumes below it

Admit = Callable[[SourceRecord], bool]
Shape = Callable[[BrazeUpdate], BrazeUpdate | None]
Ready = Callable[[int], Awaitable[bool]]  # a partition's state restored (False: revoked)
Failed = list[tuple[SourceRecord, Reason]]
Batch = dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]


@dataclass(frozen=True)
class Admission:
    """Which records a pipeline delivers: all (the live worker), or a replay's choice."""

    admit: Admit | None = None  # a record it leaves out is skipped, unmapped
    shape: Shape | None = None  # returns None to skip a mapped record


EVERYTHING = Admission()


class Backpressure:
    """Pauses the consumer's partitions while too many records are pending or Braze refuses
    the configuration; resumes them once below `RESUME_AT` of the limit and Braze accepts."""

    def __init__(self, consumer: AIOKafkaConsumer, limit: int) -> None:
        self.consumer = consumer
        self.limit = limit
        self.paused = False
        self.exhausted: set[TopicPartition] = set()  # read to their end: never resumed

    def apply(self, pending: int, halted: bool) -> None:
        if (halted or pending >= self.limit) and not self.paused:
            self.consumer.pause(*self.consumer.assignment())
            self.paused = True
        elif self.paused and not halted and pending < self.limit * RESUME_AT:
            self.consumer.resume(*(self.consumer.assignment() - self.exhausted))
            self.paused = False

    def exhaust(self, tp: TopicPartition) -> None:
        """Stop fetching a partition for good (a replay read its range)."""
        self.exhausted.add(tp)
        self.consumer.pause(tp)

    def assigned(self) -> None:
        """A new assignment starts unpaused: the consumer resumes what it assigns."""
        self.paused = False


class Intake:
    """Fetches batches, maps each record once, and queues what Braze should get."""

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        mapping: Mapping,
        selection: Admission,
        trackers: Trackers,
        queue: UserQueue,
        outcomes: Outcomes,
        inflow: Inflow,
        wake: asyncio.Event,
        halt: Halt,
        max_pending: int,
        *,
        ready: Ready | None = None,
    ) -> None:
        self.consumer = consumer
        self.mapping = mapping
        self.selection = selection
        self.trackers = trackers
        self.queue = queue
        self.outcomes = outcomes
        self.inflow = inflow
        self.wake = wake
        self.halt = halt
        self.ready = ready
        self.backpressure = Backpressure(consumer, max_pending)

    async def fetch_once(self) -> None:
        """Fetch a batch, or pause intake while too much is pending or Braze refuses us."""
        self.backpressure.apply(self.trackers.pending(), self.halt.active)
        batch = await self.consumer.getmany(timeout_ms=200, max_records=FETCH_RECORDS)
        if self.ready is not None:
            batch = await _restored(batch, self.ready)
        self.inflow.mapping = True
        try:
            taken, mapped = await self._take_all(batch)
        finally:
            self.inflow.mapping = False
        # A full batch, or a partition read short of its high watermark, says Kafka has more:
        # the next fetch is expected to bring records too.
        more = taken == FETCH_RECORDS or self._behind(batch)
        held_for_more, self.inflow.more_coming = self.inflow.more_coming, more
        if taken:
            self.outcomes.consumed(taken)
        if taken or held_for_more:
            self.wake.set()
        if mapped:
            self.outcomes.mapped(mapped)

    def _behind(self, batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]) -> bool:
        """Whether a partition of the batch holds records after the last one fetched."""
        for tp, records in batch.items():
            high = self.consumer.highwater(tp)
            if records and high is not None and records[-1].offset + 1 < high:
                return True
        return False

    async def _take_all(
        self, batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]
    ) -> tuple[int, int]:
        """Take every record of the batch; return how many there were, and how many queued."""
        taken = mapped = 0
        for tp, records in batch.items():
            for start in range(0, len(records), YIELD_EVERY):
                queued, failed = self._take_some(tp, records[start : start + YIELD_EVERY])
                mapped += queued
                if failed:
                    tracker = self.trackers.of(tp.partition)  # nothing awaited since the take
                    await self._dead_letter_while_not_mapping(failed)
                    for record, _ in failed:
                        tracker.finish(record.offset)  # a revoked one's tracker takes it, unread
                # Mapping a whole batch at once would hold the loop for a large fraction of a
                # second: answers, the limiter's releases and heartbeats would wait.
                await asyncio.sleep(0)
            taken += len(records)
        return taken, mapped

    async def _dead_letter_while_not_mapping(self, failed: Failed) -> None:
        """Write a batch's dead letters; while they wait (on a dead-letter topic Kafka will not
        take, say), nothing is being mapped, so the dispatcher sends what is queued as usual
        rather than keeping its last request back for records still to come."""
        self.inflow.mapping = False
        self.wake.set()
        try:
            await self.outcomes.dead_letter(failed)
        finally:
            self.inflow.mapping = True

    def _take_some(
        self, tp: TopicPartition, records: list[ConsumerRecord[bytes, bytes]]
    ) -> tuple[int, Failed]:
        """Map records of one partition, in offset order, and queue what they give; return how
        many were queued, and those that fail with the reason."""
        partition = tp.partition
        tracker = self.trackers.of(partition)
        offsets = [record.offset for record in records]
        tracker.track_all(offsets)
        admit, shape = self.selection.admit, self.selection.shape
        queued, failed = 0, []
        for record, offset in zip(records, offsets, strict=True):
            if admit is not None and not admit(SourceRecord.consumed(tp, record)):
                self._skip(tracker, offset)
                continue
            content_type, label, received_at_ms = record_facts(record.headers)
            try:
                result = map_record(
                    self.mapping,
                    record.value or b"",
                    content_type,
                    source=label,
                    received_at_ms=received_at_ms,
                )
            except MappingFailure as failure:
                why = Reason(failure.stage, failure.reason)
                failed.append((SourceRecord.consumed(tp, record), why))
                continue
            if type(result) is not BrazeUpdate or result.empty:
                if isinstance(result, Filtered):
                    self.outcomes.filtered(result.rule)
                tracker.finish(offset)
                continue
            update = result if shape is None else shape(result)
            if update is None:
                self._skip(tracker, offset)
                continue
            queued += 1
            self.queue.add(Item(partition, offset, update, received_at_ms, record, tracker))
        return queued, failed

    def _skip(self, tracker: PartitionOffsets, offset: int) -> None:
        self.outcomes.skipped()
        tracker.finish(offset)


async def _restored(batch: Batch, ready: Ready) -> Batch:
    """The batch once its partitions' delivery state is restored, without the partitions
    revoked meanwhile: nothing of a partition is queued before its state is there."""
    return {tp: records for tp, records in batch.items() if await ready(tp.partition)}


class Members(Protocol):
    """What a rebalance asks of a pipeline."""

    async def revoked(self, partitions: set[int]) -> None:
        """Finish what can be finished of the partitions, commit it, forget the rest."""

    def assigned(self, partitions: Iterable[int]) -> None:
        """Take up the new assignment (`partitions`: those assigned)."""


class Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    """Commit on revoke, recompute the budget share on assignment."""

    def __init__(self, members: Members) -> None:
        self.members = members

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.members.revoked({tp.partition for tp in revoked})

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.members.assigned({tp.partition for tp in assigned})


# -- the receiver's headers ---------------------------------------------------------------------


class RawRecord(Protocol):
    """A raw topic's record as a consumer or the dead-letter topic gives it."""

    @property
    def value(self) -> bytes | None: ...

    @property
    def headers(self) -> Sequence[tuple[str, bytes | None]]: ...


def map_source(mapping: Mapping, record: RawRecord) -> BrazeUpdate | Filtered:
    """Map a raw or dead-lettered record with the headers the receiver wrote."""
    content_type, source, received_at_ms = record_facts(record.headers)
    value = record.value or b""
    return map_record(mapping, value, content_type, source=source, received_at_ms=received_at_ms)


def record_facts(headers: Sequence[tuple[str, bytes | None]]) -> tuple[str, str, int | None]:
    """The content type, source label and received-at time (epoch ms) the receiver wrote; the
    first header of each name counts, as `SourceRecord.header()` reads."""
    if len(headers) >= 3:  # the receiver writes these three first, in this order
        (first, mime), (second, at), (third, label) = headers[:3]
        if first == "content-type" and second == "received-at" and third == "source":
            return _text(mime) or JSON, _text(label) or "default", _epoch_ms(at)
    content_type = source = received = None
    for name, value in headers:
        if name == "content-type":
            content_type = value if content_type is None else content_type
        elif name == "source":
            source = value if source is None else source
        elif name == "received-at" and received is None:
            received = value
    return _text(content_type) or JSON, _text(source) or "default", _epoch_ms(received)


def _epoch_ms(value: bytes | None) -> int | None:
    # ASCII digits only (bytes.isdigit), and few enough for int() to take.
    return int(value) if value and len(value) < 20 and value.isdigit() else None


@functools.lru_cache(maxsize=256)
def _text(value: bytes | None) -> str:
    # A topic holds a handful of content types and source labels: each is decoded once.
    return value.decode("utf-8", "replace") if value else ""
