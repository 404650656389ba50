"""Delivery row by row of the response table: accepted, split, halted, retried.

No broker or sandbox: the Braze client answers from a script, and the dead-letter topic is a
list; the real-broker tests in test_worker.py go through the same rows over HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from typing import Any

import orjson
import pytest
from aiokafka.structs import ConsumerRecord

from connector.batching import Item, Limits, TrackRequest, UserQueue
from connector.braze import Action, AdaptiveLimiter, Answer, RateBudget, action_for
from connector.braze_state import Halt, Outage
from connector.config import WorkerSettings, load
from connector.deadletter import SourceRecord
from connector.delivery import Delivery
from connector.mapping import BrazeUpdate
from connector.metrics import WorkerMetrics
from connector.offsets import Trackers
from connector.outcomes import Outcomes
from tests.worker_support import Letters

Reply = Callable[[dict[str, Any]], Answer]


def answer(status: int, message: str = "", **extra: Any) -> Answer:
    return Answer(status, action_for(status), message, **extra)


class Braze:
    """Answers each request with the next scripted reply (the last one for good)."""

    def __init__(self, *replies: Reply) -> None:
        self.replies = list(replies)
        self.bodies: list[dict[str, Any]] = []

    async def track(self, encoded: bytes) -> Answer:
        body = orjson.loads(encoded)
        self.bodies.append(body)
        reply = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
        return reply(body)


def always(status: int, message: str = "", **extra: Any) -> Reply:
    return lambda body: answer(status, message, **extra)


class Line:
    """A Delivery with its trackers, outcomes, halt and outage, and a queue to pack with."""

    def __init__(self, braze: Braze, **settings: Any) -> None:
        values = {"worker_halt_probe_s": 0.01, "worker_retry_max_backoff_s": 0.01, **settings}
        config = load(WorkerSettings, values)
        self.metrics = WorkerMetrics()
        self.letters = Letters()
        self.trackers = Trackers()
        self.outcomes = Outcomes(self.metrics, self.letters)  # type: ignore[arg-type]
        self.halt = Halt(self.metrics.halted)
        self.outage = Outage(60.0, self.metrics.braze_outage)
        self.settled: list[SourceRecord] = []
        self.delivery = Delivery(
            braze,  # type: ignore[arg-type]
            AdaptiveLimiter(RateBudget(1_000_000, 1.0)),
            self.trackers,
            self.outcomes,
            config,
            self.metrics,
            halt=self.halt,
            outage=self.outage,
            after=self.after,
        )
        self.queue = UserQueue()

    async def after(self, delivered: list[SourceRecord]) -> None:
        self.settled.extend(delivered)

    def request(self, users: Sequence[str], *, events: int = 0, partition: int = 0) -> TrackRequest:
        """A request of one record per user (an attributes object, `events` events each)."""
        for user in users:
            self.add(user, partition, events)
        [request] = self.queue.take(1, Limits()).requests
        return request

    def add(self, user: str, partition: int = 0, events: int = 0) -> None:
        """Queue one record of the user, read from the partition."""
        tracker = self.trackers.of(partition)
        offset = tracker.safe_offset() or 0
        offset += tracker.in_flight
        tracker.track(offset)
        update = BrazeUpdate(
            f"external_id:{user}",
            {"external_id": user},
            {"score": offset},
            tuple({"name": f"e{n}", "time": "2026-01-01T00:00:00Z"} for n in range(events)),
        )
        value = orjson.dumps({"user": user})
        record = ConsumerRecord("raw", partition, offset, 0, 0, None, value, None, 0, 0, ())
        self.queue.add(Item(partition, offset, update, None, record, tracker))

    def count(self, name: str, **labels: str) -> float | None:
        return self.metrics.registry.get_sample_value(name, labels)


class State:
    """The delivery state's side of delivery: notes what it is asked to confirm, and holds the
    answer back until `written` is set (Kafka acknowledging the state records)."""

    def __init__(self) -> None:
        self.confirmed: list[Item] = []
        self.written = asyncio.Event()

    async def confirm(self, items: list[Item]) -> None:
        self.confirmed += items
        await self.written.wait()


def users_in(body: dict[str, Any]) -> list[str]:
    return [obj["external_id"] for obj in body.get("attributes", [])]


def user_of(source: SourceRecord) -> str:
    return str(orjson.loads(source.value)["user"])


async def test_accepted_objects_are_delivered_and_those_braze_names_dead_lettered() -> None:
    error = {"type": "Invalid email", "input_array": "attributes", "index": 1}
    line = Line(Braze(always(201, "success", errors=(error,))))
    request = line.request(["a", "b", "c"])
    await line.delivery.deliver(request)
    assert [(user_of(s), why.stage, why.reason) for s, why in line.letters.sent] == [
        ("b", "braze", "Invalid email")
    ]
    assert sorted(user_of(s) for s in line.settled) == ["a", "c"]
    assert (line.outcomes.counts.delivered, line.outcomes.counts.dead_lettered) == (2, 1)
    assert line.trackers.of(0).in_flight == 0
    assert line.count("outgrow_worker_records_dead_lettered_total", stage="braze") == 1


async def test_a_request_refused_whole_is_halved_down_to_the_bad_object() -> None:
    def refuse_bad(body: dict[str, Any]) -> Answer:
        users = [obj["external_id"] for obj in body.get("attributes", [])]
        return answer(400, "invalid") if "bad" in users else answer(201, "success")

    braze = Braze(refuse_bad)
    line = Line(braze)
    await line.delivery.deliver(line.request(["a", "b", "bad", "c"]))
    assert [user_of(s) for s, _ in line.letters.sent] == ["bad"]
    assert line.letters.sent[0][1].braze_status == 400
    assert sorted(user_of(s) for s in line.settled) == ["a", "b", "c"]
    assert [len(body["attributes"]) for body in braze.bodies] == [4, 2, 2, 1, 1]


async def test_a_refused_configuration_halts_then_the_request_goes_once_accepted() -> None:
    line = Line(Braze(always(401, "Invalid API key"), always(201, "success")))
    seen: list[tuple[bool, float | None]] = []

    async def noted(delivered: list[SourceRecord]) -> None:
        seen.append((line.halt.active, line.count("outgrow_worker_halted")))

    line.delivery.after = noted
    await line.delivery.deliver(line.request(["a"]))
    assert seen == [(False, 0)]  # accepted after one probe: the halt is over
    assert line.count("outgrow_worker_braze_retries_total") == 1
    assert line.letters.sent == []


@pytest.mark.parametrize("status", [0, 500, 503, 429])
async def test_no_answer_and_throttling_are_retried_until_accepted(status: int) -> None:
    line = Line(Braze(always(status, retry_after_s=0.0), always(201, "success")))
    await line.delivery.deliver(line.request(["a", "b"]))
    assert line.outcomes.counts.delivered == 2 and line.letters.sent == []
    assert line.count("outgrow_worker_braze_retries_total") == 1
    assert line.count("outgrow_worker_braze_throttled_total") == (1 if status == 429 else 0)
    assert line.outage.since is None, "the answer ended the silence"


async def test_records_of_a_revoked_partition_are_neither_dead_lettered_nor_settled() -> None:
    error = {"type": "Invalid email", "input_array": "attributes", "index": 0}
    line = Line(Braze(always(201, "success", errors=(error,))))
    request = line.request(["a", "b"], partition=3)
    line.trackers.forget([3])  # revoked while the request was in flight
    await line.delivery.deliver(request)
    assert line.letters.sent == [] and line.settled == []


async def test_a_record_larger_than_a_request_is_dead_lettered_at_the_map_stage() -> None:
    line = Line(Braze(always(201, "success")))
    tracker = line.trackers.of(0)
    tracker.track(0)
    update = BrazeUpdate("external_id:a", {"external_id": "a"}, {}, ({"name": "e"},) * 80)
    record = ConsumerRecord("raw", 0, 0, 0, 0, None, b'{"user": "a"}', None, 0, 0, ())
    packed = UserQueue()
    packed.add(Item(0, 0, update, None, record, tracker))
    oversized = packed.take(1, Limits()).oversized
    await line.delivery.oversized(oversized)
    [(source, why)] = line.letters.sent
    assert (user_of(source), why.stage) == ("a", "map")
    assert why.reason == "one record maps to more than 75 objects"
    assert tracker.in_flight == 0


async def test_records_are_finished_only_once_kafka_has_the_state_braze_accepted() -> None:
    error = {"type": "Invalid email", "input_array": "attributes", "index": 1}
    line = Line(Braze(always(201, "success", errors=(error,))))
    state = line.delivery.state = State()
    delivering = asyncio.create_task(line.delivery.deliver(line.request(["a", "b", "c"])))
    while not state.confirmed:
        await asyncio.sleep(0)
    assert [i.update.user_key for i in state.confirmed] == ["external_id:a", "external_id:c"]
    assert line.trackers.of(0).in_flight == 3  # nothing is committed past them yet
    assert line.settled == [] and line.outcomes.counts.delivered == 0
    state.written.set()
    await delivering
    assert line.trackers.of(0).in_flight == 0
    assert line.outcomes.counts.delivered == 2


async def test_what_braze_answered_is_recorded_even_when_the_delivery_is_cancelled() -> None:
    # A stop's deadline cancels deliveries; one Braze accepted still writes its state, or the
    # partition's next owner would send the same objects again.
    line = Line(Braze(always(201, "success")))
    state = line.delivery.state = State()
    delivering = asyncio.create_task(line.delivery.deliver(line.request(["a", "b"])))
    while not state.confirmed:
        await asyncio.sleep(0)
    delivering.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await delivering
    assert line.trackers.of(0).in_flight == 2 and line.delivery.settling
    state.written.set()
    await line.delivery.settled(5)
    assert line.trackers.of(0).in_flight == 0, "finished, so that the commit covers them"
    assert line.outcomes.counts.delivered == 2 and not line.delivery.settling


async def test_an_answer_for_a_revoked_partition_confirms_nothing_of_it() -> None:
    line = Line(Braze(always(201, "success")))
    state = line.delivery.state = State()
    state.written.set()
    line.add("a", partition=0)
    line.add("b", partition=1)
    [request] = line.queue.take(1, Limits()).requests
    line.trackers.forget([1])  # revoked while the request was on the wire
    await line.delivery.deliver(request)
    assert [i.update.user_key for i in state.confirmed] == ["external_id:a"]


async def test_a_retry_after_a_revoke_leaves_out_the_revoked_partitions_objects() -> None:
    braze = Braze(always(503), always(201, "success"))
    line = Line(braze)
    state = line.delivery.state = State()
    state.written.set()
    for user, partition in (("a", 0), ("b", 1), ("c", 0), ("d", 1)):
        line.add(user, partition, events=1)
    [request] = line.queue.take(1, Limits()).requests
    original = braze.track

    async def revoke_after_the_first_answer(encoded: bytes) -> Answer:
        found = await original(encoded)
        line.trackers.forget([1])  # the drain deadline passed while it waited to be retried
        return found

    braze.track = revoke_after_the_first_answer  # type: ignore[method-assign]
    await line.delivery.deliver(request)
    first, retried = braze.bodies
    assert users_in(first) == ["a", "c", "b", "d"]  # in (partition, offset) order
    assert users_in(retried) == ["a", "c"]
    assert [e["external_id"] for e in retried["events"]] == ["a", "c"]
    assert sorted(i.update.user_key for i in state.confirmed) == ["external_id:a", "external_id:c"]
    assert line.outcomes.counts.delivered == 2 and line.letters.sent == []
    assert line.trackers.of(0).in_flight == 0


async def test_a_request_left_with_nothing_owned_is_not_sent_again() -> None:
    braze = Braze(always(503), always(201, "success"))
    line = Line(braze)
    request = line.request(["a", "b"], partition=2)
    original = braze.track

    async def revoke_after_the_first_answer(encoded: bytes) -> Answer:
        found = await original(encoded)
        line.trackers.forget([2])
        return found

    braze.track = revoke_after_the_first_answer  # type: ignore[method-assign]
    await line.delivery.deliver(request)
    assert len(braze.bodies) == 1
    assert line.outcomes.counts.delivered == 0 and line.letters.sent == []


def test_the_table_rows_this_file_relies_on() -> None:
    assert [action_for(s) for s in (201, 400, 401, 429, 503, 0)] == [
        Action.DONE,
        Action.SPLIT,
        Action.HALT,
        Action.RETRY,
        Action.RETRY,
        Action.RETRY,
    ]
