"""Intake: the receiver's headers, mapping one record, taking a fetch, backpressure."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from aiokafka import ConsumerRecord, TopicPartition

from connector.batching import UserQueue
from connector.braze import Action, Answer
from connector.braze_state import Halt
from connector.deadletter import SourceRecord
from connector.dispatch import Inflow
from connector.intake import EVERYTHING, Admission, Intake, map_source, record_facts
from connector.mapping import BrazeUpdate, MappingFailure, load_mapping
from connector.metrics import WorkerMetrics
from connector.offsets import Trackers
from connector.outcomes import Outcomes
from tests.worker_support import Letters


def test_map_source_reads_the_first_header_of_each_name() -> None:
    body = orjson.dumps({"email": "a@b.co", "created_at": "2024-05-01T10:20:30.000Z"})
    headers = (
        ("source", b"acme"),
        ("received-at", b"1714558830000"),
        ("source", b"later"),
        ("content-type", b"application/json; charset=utf-8"),
    )
    record = SourceRecord("raw", 0, 7, 0, None, body, headers)
    update = map_source(load_mapping(), record)
    assert isinstance(update, BrazeUpdate)
    assert update.events[0]["properties"]["source"] == record.header("source") == "acme"
    bare = map_source(load_mapping(), SourceRecord("raw", 0, 8, 0, None, body, ()))
    assert isinstance(bare, BrazeUpdate)
    assert bare.events[0]["properties"]["source"] == "default"


@pytest.mark.parametrize(
    "headers",
    [
        # The receiver's order, read the short way; a later repeat changes nothing.
        (
            ("content-type", b"application/json"),
            ("received-at", b"17"),
            ("source", b"acme"),
            ("source", b"later"),
        ),
        # Any other order, read header by header.
        (("source", b"acme"), ("content-type", b"application/json"), ("received-at", b"17")),
    ],
)
def test_record_facts_are_the_first_of_each_header_in_any_order(
    headers: tuple[tuple[str, bytes], ...],
) -> None:
    assert record_facts(headers) == ("application/json", "acme", 17)


@pytest.mark.parametrize("received", [b"", b"-5", b"1.5", "\u00b2".encode(), b"9" * 25])
def test_a_received_at_that_is_not_plain_digits_is_no_time(received: bytes) -> None:
    headers = (("content-type", b"application/json"), ("received-at", received), ("source", b"s"))
    assert record_facts(headers)[2] is None


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "the body is empty"),
        (b"{", "the body is not valid JSON"),
        (b"[1]", "the body is JSON but not an object"),
    ],
)
def test_json_that_is_no_object_fails_the_parse_stage(body: bytes, reason: str) -> None:
    record = SourceRecord("raw", 0, 7, 0, None, body, (("content-type", b"application/json"),))
    with pytest.raises(MappingFailure) as caught:
        map_source(load_mapping(), record)
    assert caught.value.stage == "parse"
    assert caught.value.reason.startswith(reason)


def test_a_header_kafka_holds_without_a_value_is_read_as_empty_text() -> None:
    body = orjson.dumps({"email": "a@b.co", "created_at": "2024-05-01T10:20:30.000Z"})
    headers = (("content-type", None), ("received-at", None), ("source", None), ("x", b"1"))
    record = SourceRecord("raw", 0, 7, 0, None, body, headers)
    assert record.header("source") == ""
    assert record.header("missing") is None
    assert record_facts(headers) == ("application/json", "default", None)
    update = map_source(load_mapping(), record)
    assert isinstance(update, BrazeUpdate)
    assert update.user_key == "email:a@b.co"


# -- fetching -----------------------------------------------------------------------------------

TP = TopicPartition("raw", 0)
HEADERS = (("content-type", b"application/json"), ("received-at", b"17"), ("source", b"s"))


class Consumer:
    """Hands out the batches it was given, one per getmany(); pauses and resumes as asked."""

    def __init__(self, *batches: list[bytes], backlog: int = 0) -> None:
        self.batches = list(batches)
        self.offset = 0
        self.paused: set[TopicPartition] = set()
        self.backlog = backlog  # records Kafka holds beyond the batches

    def highwater(self, tp: TopicPartition) -> int:
        return self.offset + sum(map(len, self.batches)) + self.backlog

    def assignment(self) -> set[TopicPartition]:
        return {TP, TopicPartition("raw", 1)}

    def pause(self, *tps: TopicPartition) -> None:
        self.paused.update(tps)

    def resume(self, *tps: TopicPartition) -> None:
        self.paused.difference_update(tps)

    async def getmany(
        self, timeout_ms: int, max_records: int
    ) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]:
        values = self.batches.pop(0) if self.batches else []
        records = []
        for value in values:
            records.append(
                ConsumerRecord("raw", 0, self.offset, 0, 0, None, value, None, 0, 0, HEADERS)
            )
            self.offset += 1
        return {TP: records} if records else {}


def lead(email: str) -> bytes:
    return orjson.dumps({"email": email, "created_at": "2024-05-01T10:20:30.000Z"})


def intake(consumer: Consumer, admission: Admission = EVERYTHING, limit: int = 100) -> Intake:
    metrics = WorkerMetrics()
    outcomes = Outcomes(metrics, Letters())  # type: ignore[arg-type]
    return Intake(
        consumer,
        load_mapping(),
        admission,
        Trackers(),
        UserQueue(),
        outcomes,
        Inflow(),
        asyncio.Event(),
        Halt(metrics.halted),
        limit,
    )


async def test_a_fetch_queues_what_maps_and_settles_the_rest() -> None:
    batch = [lead("a@b.co"), lead("qa@outgrow.co"), b"[1]", lead("c@d.co")]
    line = intake(Consumer(batch))
    await line.fetch_once()
    counts = line.outcomes.counts
    assert (counts.consumed, counts.filtered, counts.dead_lettered) == (4, 1, 1)
    assert len(line.queue) == 2 and line.wake.is_set()
    tracker = line.trackers.of(0)
    assert tracker.in_flight == 2 and tracker.safe_offset() == 0  # the queued first record
    [(source, why)] = line.outcomes.dead_letters.sent  # type: ignore[attr-defined]
    assert (source.offset, why.stage) == (2, "parse")
    metrics = line.outcomes.metrics.registry
    assert metrics.get_sample_value("outgrow_worker_records_mapped_total") == 2
    assert not line.inflow.mapping and not line.inflow.more_coming


async def test_a_fetch_short_of_the_high_watermark_expects_more() -> None:
    line = intake(Consumer([lead("a@b.co")], [lead("c@d.co")]))
    await line.fetch_once()
    assert line.inflow.more_coming  # the second batch is still in Kafka
    await line.fetch_once()
    assert not line.inflow.more_coming  # read to the end
    behind = intake(Consumer([lead("a@b.co")], backlog=5))
    await behind.fetch_once()
    assert behind.inflow.more_coming


async def test_a_selection_skips_records_before_and_after_mapping() -> None:
    def admit(record: SourceRecord) -> bool:
        return record.offset != 0

    def shape(update: BrazeUpdate) -> BrazeUpdate | None:
        return None if update.user_key.endswith("c@d.co") else update

    line = intake(
        Consumer([lead("a@b.co"), lead("b@b.co"), lead("c@d.co")]), Admission(admit, shape)
    )
    await line.fetch_once()
    assert (line.outcomes.counts.skipped, len(line.queue)) == (2, 1)
    assert line.trackers.of(0).in_flight == 1


async def test_intake_pauses_at_the_limit_and_while_halted_and_resumes_below_80_percent() -> None:
    consumer = Consumer([lead(f"u{n}@b.co") for n in range(10)])
    line = intake(consumer, limit=10)
    await line.fetch_once()
    assert not consumer.paused
    await line.fetch_once()  # 10 pending: paused before fetching
    assert consumer.paused == consumer.assignment()
    tracker = line.trackers.of(0)
    for offset in range(2):
        tracker.finish(offset)
    await line.fetch_once()  # 8 pending: not below 80 %
    assert consumer.paused
    tracker.finish(2)
    line.backpressure.exhaust(TopicPartition("raw", 1))  # read to its end: stays paused
    await line.fetch_once()
    assert consumer.paused == {TopicPartition("raw", 1)}
    line.halt.enter(Answer(401, Action.HALT, "Invalid API key"))
    await line.fetch_once()
    assert consumer.paused == consumer.assignment()
