"""The queue: coalescing per user and packing into requests of at most 75 objects."""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from connector.batching import Item, Limits, Packed, UserQueue


@dataclass(frozen=True)
class Update:
    """A mapped record as batching sees it."""

    user_key: str
    attributes: dict[str, Any] | None = None
    events: tuple[str, ...] = field(default_factory=tuple)

    def attribute_object(self) -> dict[str, Any] | None:
        if self.attributes is None:
            return None
        return {"external_id": self.user_key, **self.attributes}

    def event_objects(self) -> list[dict[str, Any]]:
        return [{"external_id": self.user_key, "name": name} for name in self.events]

    @property
    def attribute_payload(self) -> dict[str, Any] | None:
        return self.attribute_object()

    @property
    def event_payloads(self) -> tuple[dict[str, Any], ...]:
        return tuple(self.event_objects())


def item(offset: int, user: str, partition: int = 0, events: int = 0, **attrs: Any) -> Item:
    names = tuple(f"e{offset}.{n}" for n in range(events))
    return Item(partition, offset, Update(user, attrs or None, names))


def taken(items: list[Item], limits: Limits | None = None, *, top_up: bool = True) -> Packed:
    """One round of a queue holding the items: as many requests as it can make of them."""
    return queued(items, top_up=top_up).take(len(items) + 1, limits or Limits())


def test_attributes_coalesce_last_value_wins_and_events_are_kept() -> None:
    packed = taken(
        [
            item(0, "a", score=1, segment="x", events=1),
            item(1, "b", score=5),
            item(2, "a", score=2, events=1),
        ]
    )
    [request] = packed.requests
    assert request.users == ["a", "b"]
    assert request.attributes[0] == {"external_id": "a", "score": 2, "segment": "x"}
    assert [event["name"] for event in request.events] == ["e0.0", "e2.0"]
    assert [i.offset for i in request.items_for("attributes", 0)] == [0, 2]
    assert request.size == 4  # a: one attributes object and two events; b: one object


def test_requests_hold_at_most_75_objects_and_whole_users() -> None:
    items = [item(n, f"u{n}", events=1, score=n) for n in range(100)]  # 2 objects per user
    queue = queued(items)
    packed = queue.take(10, Limits())
    assert [r.size for r in packed.requests] == [74, 74, 52]
    assert not queue and not packed.oversized
    users = [u for r in packed.requests for u in r.users]
    assert len(users) == len(set(users)) == 100


def test_legacy_mode_counts_each_array_separately() -> None:
    items = [item(n, f"u{n}", events=1, score=n) for n in range(100)]
    packed = taken(items, Limits(per_array=True))
    assert [(len(r.attributes), len(r.events)) for r in packed.requests] == [(75, 75), (25, 25)]


def test_a_user_larger_than_a_request_goes_in_rounds_without_splitting_records() -> None:
    queue = queued([item(n, "big", events=10, score=n) for n in range(10)])  # 1 + 100 objects
    packed = queue.take(5, Limits())
    assert len(packed.requests) == 1
    first = packed.requests[0]
    assert first.size == 1 + 70
    assert first.attributes[0]["score"] == 6
    assert len(queue) == 3 and not queue.take(5, Limits()).requests  # waits while in flight
    queue.release(first.users)
    [again] = queue.take(5, Limits()).requests
    assert again.size == 31 and [i.offset for i in again.items()] == [7, 8, 9]
    assert not queue


def test_objects_map_back_to_their_records() -> None:
    packed = taken([item(0, "a", score=1), item(1, "a", score=2, events=1)])
    request = packed.requests[0]
    assert orjson.loads(request.encoded()) == {
        "attributes": [{"external_id": "a", "score": 2}],
        "events": [{"external_id": "a", "name": "e1.0"}],
    }
    assert [i.offset for i in request.items_for("attributes", 0)] == [0, 1]
    assert [i.offset for i in request.items_for("events", 0)] == [1]
    assert request.items_for("events", 5) == []
    assert request.items_for("purchases", 0) == []


def test_split_halves_keep_every_object_once() -> None:
    packed = taken([item(n, f"u{n}", events=1, s=1) for n in range(5)])
    left, right = packed.requests[0].split()
    assert left.size + right.size == 10
    assert left.size == 5
    assert {i.offset for i in left.items()} | {i.offset for i in right.items()} == set(range(5))


records = st.lists(
    st.tuples(st.sampled_from("abcdefgh"), st.integers(0, 5), st.booleans()),
    max_size=200,
)


@given(records, st.integers(1, 75), st.booleans(), st.booleans())
def test_a_round_sends_keeps_or_refuses_every_record_exactly_once_within_the_limits(
    specs: list[tuple[str, int, bool]], max_objects: int, per_array: bool, top_up: bool
) -> None:
    # Every record queued gives an object, as the worker queues only those.
    items = [
        item(n, user, events=events, **({"v": n} if attrs or not events else {}))
        for n, (user, events, attrs) in enumerate(specs)
    ]
    limits = Limits(max_objects, per_array)
    queue = queued(items, top_up=top_up)
    packed = queue.take(len(items) + 1, limits)
    sent = [i.offset for r in packed.requests for i in r.items()]
    gone = sent + [i.offset for i in packed.oversized]
    assert len(gone) == len(set(gone))
    assert len(queue) == len(items) - len(gone)
    for request in packed.requests:
        assert len(request.users) == len(set(request.users))
        if per_array:
            assert max(len(request.attributes), len(request.events)) <= max_objects
        else:
            assert request.size <= max_objects
    all_users = [u for r in packed.requests for u in r.users]
    assert len(all_users) == len(set(all_users))
    assert queue.in_flight == set(all_users)


# --------------------------------------------------------------------------- the user queue


def test_a_user_too_big_for_the_room_left_fills_it_with_its_first_records() -> None:
    items = [item(n, f"u{n}", events=1, score=n) for n in range(36)]  # 72 objects
    items += [item(36 + n, "z", events=1, score=n) for n in range(5)]  # z needs 6 objects
    queue = queued(items)
    first = queue.take(5, Limits())
    assert [r.size for r in first.requests] == [75]
    assert [i.offset for i in first.requests[0].items() if i.user_key == "z"] == [36, 37]
    assert not queue.take(5, Limits()).requests  # z's rest waits while z is in flight
    queue.release(first.requests[0].users)
    rest = queue.take(5, Limits()).requests
    assert [[i.offset for i in r.items()] for r in rest] == [[38, 39, 40]]


def queued(items: list[Item], *, top_up: bool = True) -> UserQueue:
    queue = UserQueue(top_up=top_up)
    for one in items:
        queue.add(one)
    return queue


def test_a_request_two_records_short_is_topped_up_by_a_user_of_three_objects() -> None:
    # 2 objects a record: 37 users fill 74 places of 75. A user with two records waiting
    # (one merged attributes object and two events) fills the last three exactly.
    singles = [item(n, f"u{n}", events=1, score=n) for n in range(80)]
    twice = [item(100, "w", events=1, score=1), item(101, "w", events=1, score=2)]
    topped = queued(singles + twice).take(2, Limits())
    plain = queued(singles + twice, top_up=False).take(2, Limits())
    assert [r.size for r in topped.requests] == [75, 74]
    assert "w" in topped.requests[0].users and "u36" not in topped.requests[0].users
    assert [r.size for r in plain.requests] == [74, 74]
    assert "w" not in {u for r in plain.requests for u in r.users}


def test_a_user_in_flight_never_tops_a_request_up() -> None:
    singles = [item(n, f"u{n}", events=1, score=n) for n in range(80)]
    twice = [item(100, "w", events=1, score=1), item(101, "w", events=1, score=2)]
    queue = queued(singles + twice)
    queue.in_flight.add("w")
    assert [r.size for r in queue.take(1, Limits()).requests] == [74]
    queue.release(["w"])  # ready again: a candidate once more
    assert [r.size for r in queue.take(1, Limits()).requests] == [75]


def test_the_queue_takes_only_as_many_requests_as_asked() -> None:
    queue = queued([item(n, f"u{n}", events=1, score=n) for n in range(100)])
    packed = queue.take(1, Limits())
    assert [r.size for r in packed.requests] == [74]
    assert len(queue) == 100 - 37
    assert queue.in_flight == set(packed.requests[0].users)
    assert [r.size for r in queue.take(5, Limits()).requests] == [74, 52]
    assert len(queue) == 0


def test_a_user_in_flight_waits_until_released_then_comes_first() -> None:
    queue = queued([item(0, "a", score=1), item(1, "b", score=1)])
    first = queue.take(1, Limits()).requests[0]
    assert first.users == ["a", "b"]
    queue.add(item(2, "b", score=2))
    queue.add(item(3, "c", score=3))
    queue.add(item(4, "a", score=4))
    assert queue.take(3, Limits()).requests[0].users == ["c"]
    queue.release(["a", "b"])
    again = queue.take(3, Limits()).requests[0]
    assert again.users == ["b", "a"]  # b's waiting record (offset 2) is older than a's (4)


def test_a_last_request_with_room_waits_until_its_oldest_record_had_its_window() -> None:
    now = [100.0]
    queue = UserQueue(clock=lambda: now[0])
    for n in range(40):
        queue.add(item(n, f"u{n}", events=1, score=n))
    packed = queue.take(5, Limits(), wait_s=0.5)
    assert [r.size for r in packed.requests] == [74]
    assert packed.held_until == 100.5
    assert len(queue) == 3 and queue.in_flight == set(packed.requests[0].users)
    now[0] = 100.25
    queue.add(item(40, "u0", score=99))  # u0 is in flight: its record waits
    queue.add(item(41, "u41", events=1, score=1))
    assert queue.take(5, Limits(), wait_s=0.5).held_until == 100.5
    now[0] = 100.5
    rest = queue.take(5, Limits(), wait_s=0.5)
    assert [r.users for r in rest.requests] == [["u37", "u38", "u39", "u41"]]
    assert rest.held_until is None


def test_a_full_last_request_goes_without_waiting() -> None:
    queue = queued([item(0, "u0", events=75)])
    packed = queue.take(5, Limits(), wait_s=60)
    assert [r.size for r in packed.requests] == [75] and packed.held_until is None


def test_the_queue_forgets_revoked_partitions() -> None:
    queue = queued([item(0, "a", partition=0, score=1), item(0, "b", partition=1, score=1)])
    queue.drop({1})
    assert len(queue) == 1
    assert queue.take(5, Limits()).requests[0].users == ["a"]


def test_the_queue_defers_what_follows_an_oversized_record() -> None:
    queue = queued([item(0, "a", events=80), item(1, "a", score=1)])
    packed = queue.take(5, Limits())
    assert [i.offset for i in packed.oversized] == [0]
    assert not packed.requests and "a" not in queue.in_flight
    assert [i.offset for i in queue.take(5, Limits()).requests[0].items()] == [1]


def _summary(requests: list[Any]) -> list[tuple[Any, ...]]:
    return [
        (orjson.loads(r.encoded()), [(i.partition, i.offset) for i in r.items()]) for r in requests
    ]


queue_records = st.lists(
    st.tuples(st.sampled_from("abcdefgh"), st.integers(0, 2), st.integers(0, 40), st.booleans()),
    max_size=150,
)
# Many users of one or two objects a record, as leads map: requests get topped up.
lead_records = st.lists(
    st.tuples(
        st.sampled_from([f"u{n}" for n in range(60)]),
        st.integers(0, 2),
        st.integers(0, 1),
        st.booleans() | st.just(True),
    ),
    min_size=20,
    max_size=200,
)


def items_of(specs: list[tuple[str, int, int, bool]]) -> list[Item]:
    """Records from (user, partition, events, attributes) specs; one without events always has
    attributes, so that every record gives an object."""
    return [
        item(
            n, user, partition=partition, events=events, **({"v": n} if attrs or not events else {})
        )
        for n, (user, partition, events, attrs) in enumerate(specs)
    ]


@given(queue_records, st.sets(st.sampled_from("abcdefgh")), st.integers(1, 4), st.integers(2, 75))
def test_the_queue_packs_ready_users_in_order_into_at_most_the_requests_asked(
    specs: list[tuple[str, int, int, bool]], busy: set[str], free: int, max_objects: int
) -> None:
    items = items_of(specs)
    limits = Limits(max_objects)
    queue = queued(items, top_up=False)
    queue.in_flight.update(busy)

    packed = queue.take(free, limits)

    assert len(packed.requests) <= free
    users = [u for r in packed.requests for u in r.users]
    assert not set(users) & busy, "a user in flight was packed again"
    firsts: dict[str, tuple[int, int]] = {}
    for one in sorted(items, key=lambda i: (i.partition, i.offset)):
        firsts.setdefault(one.user_key, (one.partition, one.offset))
    assert [firsts[u] for u in users] == sorted(firsts[u] for u in users), "users out of order"
    waiting = {i.user_key for i in items if i.user_key not in busy} - set(users)
    if len(packed.requests) < free:  # only a user whose first record fits no request is left
        assert waiting <= {i.user_key for i in packed.oversized}
    sent = [(i.partition, i.offset) for r in packed.requests for i in r.items()]
    for user in set(users):  # a user's records go from its first, none skipped
        mine = sorted((i.partition, i.offset) for i in items if i.user_key == user)
        theirs = sorted(p for p in sent if p in mine)
        assert theirs == mine[: len(theirs)]
    gone = sent + [(i.partition, i.offset) for i in packed.oversized]
    assert len(queue) == len(items) - len(gone)


@given(queue_records, st.integers(1, 4), st.integers(2, 75), st.sampled_from([0.0, 2.0]))
def test_rounds_of_the_queue_send_every_record_once_and_each_user_in_order(
    specs: list[tuple[str, int, int, bool]], free: int, max_objects: int, wait_s: float
) -> None:
    _check_rounds(items_of(specs), free, max_objects, wait_s)


@given(lead_records, st.integers(1, 4), st.sampled_from([5, 8, 9, 75]), st.sampled_from([0, 2.0]))
def test_rounds_of_topped_up_requests_send_every_record_once_and_each_user_in_order(
    specs: list[tuple[str, int, int, bool]], free: int, max_objects: int, wait_s: float
) -> None:
    _check_rounds(items_of(specs), free, max_objects, wait_s)


def _check_rounds(items: list[Item], free: int, max_objects: int, wait_s: float) -> None:
    """Half the records are queued at first, the rest a few a round; a round's requests are
    in flight until the end of the next round, as answers come while more records arrive."""
    now = [0.0]
    queue = UserQueue(clock=lambda: now[0])
    half = len(items) // 2
    arriving = iter(items[half:])
    for one in items[:half]:
        queue.add(one)
    sent: list[tuple[int, Item]] = []  # (round, record)
    flying: list[str] = []  # the users of the last round's requests
    for round_ in range(len(items) + 6):
        now[0] = float(round_)  # a held request goes two rounds after its oldest record came
        for one in itertools.islice(arriving, 5):
            queue.add(one)
        packed = queue.take(free, Limits(max_objects), wait_s=wait_s)
        taken = [i for r in packed.requests for i in r.items()] + packed.oversized
        sent += [(round_, i) for i in taken]
        users = [u for r in packed.requests for u in r.users]
        assert len(users) == len(set(users)), "a user in two requests of one round"
        assert not set(users) & set(flying), "a user in two requests in flight at once"
        assert all(r.size <= max_objects for r in packed.requests)
        queue.release(flying)
        flying = users
        if not queue and len(sent) == len(items):
            break
    queue.release(flying)
    assert not queue and not queue.in_flight
    assert not queue._several, "top-up candidates outlived their records"
    positions = sorted((i.partition, i.offset) for _, i in sent)
    assert positions == sorted((i.partition, i.offset) for i in items)
    for user, partition in {(i.user_key, i.partition) for i in items}:
        mine = sorted(
            (i.offset, round_)
            for round_, i in sent
            if (i.user_key, i.partition) == (user, partition)
        )
        rounds = [round_ for _, round_ in mine]
        assert rounds == sorted(rounds), "a later record of a user went in an earlier round"


@given(queue_records, st.sets(st.integers(0, 2)), st.sets(st.sampled_from("abcdefgh")))
def test_after_a_revoke_the_queue_sends_exactly_the_kept_records_once(
    specs: list[tuple[str, int, int, bool]], revoked: set[int], busy: set[str]
) -> None:
    items = items_of(specs)
    queue = queued(items)
    queue.in_flight.update(busy)
    dropped = queue.drop(revoked)
    kept = sorted((i.partition, i.offset) for i in items if i.partition not in revoked)
    assert dropped == dict(Counter(i.partition for i in items if i.partition in revoked))
    assert len(queue) == len(kept)
    sent: list[tuple[int, int]] = []
    while_busy = queue.take(4, Limits(75))
    assert not {u for r in while_busy.requests for u in r.users} & busy
    sent += [(i.partition, i.offset) for r in while_busy.requests for i in r.items()]
    sent += [(i.partition, i.offset) for i in while_busy.oversized]
    queue.release([*busy, *(u for r in while_busy.requests for u in r.users)])
    for _ in range(len(items) + 1):
        packed = queue.take(4, Limits(75))
        sent += [(i.partition, i.offset) for r in packed.requests for i in r.items()]
        sent += [(i.partition, i.offset) for i in packed.oversized]
        queue.release([u for r in packed.requests for u in r.users])
        if not queue:
            break
    assert sorted(sent) == kept


class Screen:
    """Leaves out records with `seen` set and drops the attribute `old` of the others; notes
    which users it was asked about, and the records it left out."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        self.left_out: list[int] = []

    def __call__(self, user: str, items: list[Item]) -> list[Item]:
        self.asked.append(user)
        kept = []
        for one in items:
            attributes = one.update.attributes or {}
            if attributes.get("seen"):
                self.left_out.append(one.offset)
                continue
            if "old" in attributes:
                rest = {k: v for k, v in attributes.items() if k != "old"}
                update = Update(one.update.user_key, rest or None, one.update.events)
                one = one._replace(update=update)
            kept.append(one)
        return kept


def screened_queue(items: list[Item], screen: Screen, *, top_up: bool = True) -> UserQueue:
    queue = UserQueue(screen=screen, top_up=top_up)
    for one in items:
        queue.add(one)
    return queue


def test_a_user_is_screened_when_taken_and_only_what_it_keeps_is_sent() -> None:
    screen = Screen()
    queue = screened_queue(
        [
            item(0, "a", score=1, old=1),
            item(1, "b", seen=True),
            item(2, "a", seen=True),
            item(3, "c", score=3),
        ],
        screen,
    )
    [request] = queue.take(5, Limits()).requests
    assert request.users == ["a", "c"]  # b had nothing left to send
    assert request.attributes == [
        {"external_id": "a", "score": 1},
        {"external_id": "c", "score": 3},
    ]
    assert [i.offset for i in request.items()] == [0, 3]
    assert sorted(screen.left_out) == [1, 2]
    assert len(queue) == 0 and not queue.take(5, Limits()).requests


def test_screening_is_asked_again_for_a_user_taken_again() -> None:
    screen = Screen()
    queue = screened_queue([item(0, "a", score=1)], screen)
    first = queue.take(5, Limits()).requests[0]
    queue.add(item(1, "a", score=2))
    queue.add(item(2, "a", seen=True))
    assert not queue.take(5, Limits()).requests  # a is in flight: not screened yet
    assert screen.asked == ["a"]
    queue.release(first.users)
    [again] = queue.take(5, Limits()).requests
    assert [i.offset for i in again.items()] == [1] and screen.asked == ["a", "a"]
    assert len(queue) == 0


def test_a_held_request_keeps_its_screened_users_in_order() -> None:
    now = [10.0]
    screen = Screen()
    queue = UserQueue(clock=lambda: now[0], screen=screen)
    queue.add(item(0, "a", seen=True))
    queue.add(item(1, "a", score=1))
    queue.add(item(2, "b", score=2))
    assert queue.take(5, Limits(), wait_s=1.0).held_until == 11.0
    assert len(queue) == 2  # a's first record left out, its second kept in its place
    now[0] = 11.0
    [request] = queue.take(5, Limits(), wait_s=1.0).requests
    assert request.users == ["a", "b"] and [i.offset for i in request.items()] == [1, 2]
    assert screen.left_out == [0]
    assert screen.asked == ["a", "b"]  # held and queued again, nothing sent: not screened again


def test_a_held_user_with_a_record_added_meanwhile_is_screened_again() -> None:
    now = [10.0]
    screen = Screen()
    queue = UserQueue(clock=lambda: now[0], screen=screen)
    queue.add(item(0, "a", score=1))
    assert queue.take(5, Limits(), wait_s=1.0).held_until == 11.0
    queue.add(item(1, "a", seen=True))
    now[0] = 11.0
    [request] = queue.take(5, Limits(), wait_s=1.0).requests
    assert [i.offset for i in request.items()] == [0] and screen.left_out == [1]
    assert screen.asked == ["a", "a"]


def test_a_top_up_candidate_is_screened_before_it_fills_the_request() -> None:
    singles = [item(n, f"u{n}", events=1, score=n) for n in range(80)]
    # w: three records of which the screen leaves one out; the two left give 3 objects.
    twice = [
        item(100, "w", events=1, score=1),
        item(101, "w", seen=True),
        item(102, "w", events=1, score=2),
    ]
    screen = Screen()
    topped = screened_queue(singles + twice, screen).take(2, Limits())
    assert [r.size for r in topped.requests] == [75, 74]
    first = topped.requests[0]
    assert "w" in first.users and [i.offset for i in first.items() if i.user_key == "w"] == [
        100,
        102,
    ]
    assert screen.left_out == [101]
    # u36 was screened when it came next after the first 72 objects, and then the request was
    # topped up with w instead: it starts the second request without being screened again.
    assert topped.requests[1].users[0] == "u36" and screen.asked.count("u36") == 1


@given(records, st.integers(1, 75), st.booleans(), st.sets(st.integers(0, 199)))
def test_screening_sends_or_leaves_out_every_record_exactly_once(
    specs: list[tuple[str, int, bool]], max_objects: int, top_up: bool, seen: set[int]
) -> None:
    items = [
        item(n, user, events=events, **({"v": n} if attrs or not events else {}))
        for n, (user, events, attrs) in enumerate(specs)
    ]
    items = [
        one if one.offset not in seen else item(one.offset, one.user_key, seen=True)
        for one in items
    ]
    screen = Screen()
    queue = screened_queue(items, screen, top_up=top_up)
    limits = Limits(max_objects)
    gone: list[int] = []
    for _ in range(len(items) + 1):  # rounds until everything went, releasing every request
        packed = queue.take(len(items) + 1, limits)
        for request in packed.requests:
            gone += [i.offset for i in request.items()]
            queue.release(request.users)
        gone += [i.offset for i in packed.oversized]
    gone += screen.left_out
    assert sorted(gone) == sorted(set(gone)) == sorted(i.offset for i in items)
    assert len(queue) == 0
