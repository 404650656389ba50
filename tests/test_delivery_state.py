"""Delivery state: what is left out of a user's records, and what is recorded of Braze's answer."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.batching import Item
from connector.delivery_state import DeliveryState
from connector.mapping_results import BrazeUpdate
from connector.producer import partition_of
from connector.state_store import StateStore
from connector.state_value import MAX_EVENT_KEYS, StateValue, readable, state_key, value_digest

PARTITIONS = 3
DAY_S = 86_400.0


def user_on(partition: int, prefix: str = "external_id:u") -> str:
    """A user key that keys to `partition` of PARTITIONS."""
    for n in itertools.count():
        user = f"{prefix}{n}"
        if partition_of(user.encode(), PARTITIONS) == partition:
            return user
    raise AssertionError("unreachable")


USER = user_on(1)


def record(
    offset: int,
    attributes: dict[str, Any] | None = None,
    events: tuple[tuple[str, str | None], ...] = (),
    *,
    user: str = USER,
    partition: int = 1,
) -> Item:
    """A record of `user` read from `partition`, with events given as (name, key)."""
    update = BrazeUpdate(
        user,
        {"external_id": user},
        attributes or {},
        tuple({"name": name, "time": "2026-12-08T00:00:00Z"} for name, _ in events),
        tuple(key for _, key in events),
    )
    return Item(partition, offset, update)


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store() -> Iterator[StateStore]:
    with StateStore.open(None, 4) as store:
        for partition in range(PARTITIONS):
            store.load(partition)
        yield store


def state_of(
    store: StateStore, *, resend: bool = False, clock: Clock | None = None
) -> DeliveryState:
    return DeliveryState(store, window_days=30.0, clock=clock or Clock(), resend=resend)


def deliver(state: DeliveryState, items: list[Item], user: str = USER) -> Any:
    """Screen one user's records and confirm what was kept, as if Braze accepted all of it."""
    screened = state.screen(user, items, PARTITIONS)
    state.confirm(screened.kept, PARTITIONS)
    return screened


def test_a_new_user_sends_everything_as_it_is(store: StateStore) -> None:
    items = [record(5, {"score": 3, "answer": "yes"}, (("outgrow_submission", "lead-1"),))]
    screened = state_of(store).screen(USER, items, PARTITIONS)
    assert screened.kept[0] is items[0]
    assert (screened.skipped, screened.events_skipped, screened.unguarded) == ([], 0, 0)


def test_a_webhook_retry_sends_nothing_again(store: StateStore) -> None:
    state = state_of(store)
    lead = {"score": 3, "answer": "yes"}
    deliver(state, [record(5, lead, (("outgrow_submission", "lead-1"),))])
    retry = record(6, lead, (("outgrow_submission", "lead-1"),))
    screened = state.screen(USER, [retry], PARTITIONS)
    assert screened.kept == []
    assert screened.skipped == [retry]
    assert (screened.events_skipped, screened.attributes_skipped_unchanged) == (1, 2)


def test_a_resubmission_sends_only_the_changed_attributes_and_its_new_event(
    store: StateStore,
) -> None:
    state = state_of(store)
    deliver(state, [record(5, {"a": 1, "b": "x", "c": [1, 2]}, (("submitted", "lead-1"),))])
    again = record(9, {"a": 1, "b": "y", "c": [1, 2]}, (("submitted", "lead-2"),))
    screened = state.screen(USER, [again], PARTITIONS)
    (kept,) = screened.kept
    assert kept.update == BrazeUpdate(
        USER,
        {"external_id": USER},
        {"b": "y"},
        again.update.events,
        ("lead-2",),  # type: ignore[attr-defined]
    )
    assert (kept.partition, kept.offset) == (1, 9)
    assert screened.attributes_skipped_unchanged == 2


def test_a_replayed_record_at_or_before_the_confirmed_position_never_moves_a_profile_back(
    store: StateStore,
) -> None:
    state = state_of(store)
    deliver(state, [record(5, {"plan": "old"}), record(8, {"plan": "new"})])
    screened = state.screen(USER, [record(5, {"plan": "old"}), record(8, {"plan": "new"})], 3)
    assert screened.kept == []
    assert screened.attributes_skipped_history == 2
    later = state.screen(USER, [record(9, {"plan": "old"})], PARTITIONS)
    assert [item.offset for item in later.kept] == [9]


def test_an_attribute_braze_never_received_is_sent_once_then_only_when_it_changes(
    store: StateStore,
) -> None:
    state = state_of(store)
    deliver(state, [record(1, {"a": 1}), record(2, {"a": 2})])
    replay = [record(1, {"a": 1, "new": "x"}), record(2, {"a": 2, "new": "x"})]
    screened = deliver(state, replay)
    assert [(item.offset, dict(item.update.attributes)) for item in screened.kept] == [
        (1, {"new": "x"})
    ]
    assert state.screen(USER, replay, PARTITIONS).kept == []


def test_a_value_changed_back_within_one_screening_is_still_sent(store: StateStore) -> None:
    state = state_of(store)
    deliver(state, [record(1, {"a": "x"})])
    screened = state.screen(USER, [record(2, {"a": "y"}), record(3, {"a": "x"})], PARTITIONS)
    assert [item.offset for item in screened.kept] == [2, 3]


def test_an_event_key_twice_in_one_screening_is_sent_once(store: StateStore) -> None:
    twice = [record(1, events=(("e", "k"),)), record(2, events=(("e", "k"), ("f", "k")))]
    screened = state_of(store).screen(USER, twice, PARTITIONS)
    assert [item.update.event_keys for item in screened.kept] == [("k",), ("k",)]  # type: ignore[attr-defined]
    assert [item.update.events[0]["name"] for item in screened.kept] == ["e", "f"]  # type: ignore[attr-defined]
    assert screened.events_skipped == 1


def test_an_event_without_a_key_is_always_sent(store: StateStore) -> None:
    state = state_of(store)
    deliver(state, [record(1, events=(("e", None),))])
    screened = state.screen(USER, [record(2, events=(("e", None),))], PARTITIONS)
    assert len(screened.kept) == 1
    assert screened.events_skipped == 0


def test_instructions_go_only_with_an_attribute_that_is_sent(store: StateStore) -> None:
    state = state_of(store)
    deliver(state, [record(1, {"a": 1, "b": 1})])
    unchanged = record(2, {"a": 1, "_update_existing_only": False}, (("e", "k"),))
    changed = record(3, {"a": 1, "b": 2, "_update_existing_only": False})
    screened = state.screen(USER, [unchanged, changed], PARTITIONS)
    assert [dict(item.update.attributes) for item in screened.kept] == [  # type: ignore[attr-defined]
        {},
        {"b": 2, "_update_existing_only": False},
    ]
    assert screened.kept[0].update.attribute_payload is None


def test_a_record_whose_user_keys_elsewhere_is_sent_in_full_and_records_nothing(
    store: StateStore,
) -> None:
    state = state_of(store)
    stray = record(4, {"a": 1}, (("e", "k"),), partition=0)
    for _ in range(2):
        screened = deliver(state, [stray])
        assert screened.kept == [stray]
        assert screened.unguarded == 1
    assert state.confirm([stray], PARTITIONS) == {}
    assert [store.count(p) for p in range(PARTITIONS)] == [0, 0, 0]


def test_resend_keeps_everything_and_still_records_it(store: StateStore) -> None:
    lead = record(1, {"a": 1}, (("e", "k"),))
    deliver(state_of(store), [lead])
    resend = state_of(store, resend=True)
    screened = resend.screen(USER, [lead, record(2)], PARTITIONS)
    assert screened.kept == [lead]
    assert [item.offset for item in screened.skipped] == [2]
    records = resend.confirm([record(3, {"a": 2})], PARTITIONS)
    assert list(records) == [1]
    assert state_of(store).screen(USER, [record(4, {"a": 2})], PARTITIONS).kept == []


def test_confirm_writes_the_store_and_returns_the_same_bytes_once(store: StateStore) -> None:
    state = state_of(store)
    lead = record(1, {"a": 1}, (("e", "k"),))
    records = state.confirm([lead], PARTITIONS)
    assert records == {1: [(state_key(USER), store.get(1, state_key(USER)))]}
    assert state.confirm([lead], PARTITIONS) == {}  # nothing new: nothing to write


def test_confirm_for_a_partition_not_held_changes_nothing(store: StateStore) -> None:
    store.drop(1)
    assert state_of(store).confirm([record(1, {"a": 1})], PARTITIONS) == {}
    assert store.get(1, state_key(USER)) is None


def test_event_keys_are_forgotten_after_the_window(store: StateStore) -> None:
    clock = Clock()
    state = state_of(store, clock=clock)
    deliver(state, [record(1, events=(("e", "old"),))])
    clock.now += 29 * DAY_S
    assert state.screen(USER, [record(2, events=(("e", "old"),))], PARTITIONS).kept == []
    clock.now += 2 * DAY_S
    assert len(state.screen(USER, [record(3, events=(("e", "old"),))], PARTITIONS).kept) == 1
    deliver(state, [record(4, events=(("e", "new"),))])
    assert StateValue(store.get(1, state_key(USER))).events == 1


def test_a_user_keeps_at_most_the_newest_1024_event_keys(store: StateStore) -> None:
    clock = Clock()
    state = state_of(store, clock=clock)
    for n in range(MAX_EVENT_KEYS + 5):
        clock.now += 60
        state.confirm([record(n, events=(("e", f"k{n}"),))], PARTITIONS)
    kept = state.screen(USER, [record(10_000 + n, events=(("e", f"k{n}"),)) for n in range(8)], 3)
    assert [item.update.event_keys for item in kept.kept] == [  # type: ignore[attr-defined]
        (f"k{n}",) for n in range(5)
    ]


@pytest.mark.parametrize(
    "value",
    [
        {1: "a non-string key"},
        2**80,
        "x" * 5_000_000,
        {"deep": [[[[{"a": [None, 1.5, True]}]]]]},
        {"b": 1, "a": 2},
    ],
    ids=["int-key", "huge-int", "huge-string", "nested", "object"],
)
def test_hostile_values_are_screened_and_recorded_without_harm(
    store: StateStore, value: Any
) -> None:
    state = state_of(store)
    deliver(state, [record(1, {"v": value, 7: "name not text"})])  # type: ignore[dict-item]
    screened = state.screen(USER, [record(2, {"v": value})], PARTITIONS)
    undigestable = value_digest(value) is None
    assert len(screened.kept) == undigestable
    assert readable(store.get(1, state_key(USER)))


def test_deeply_nested_values_have_no_digest_and_are_always_sent(store: StateStore) -> None:
    deep: Any = []
    for _ in range(10_000):
        deep = [deep]
    assert value_digest(deep) is None
    state = state_of(store)
    deliver(state, [record(1, {"v": deep})])
    assert len(state.screen(USER, [record(2, {"v": deep})], PARTITIONS).kept) == 1


# A history of one user's records: each sets some of three attributes and may carry an event key.
histories = st.lists(
    st.tuples(
        st.dictionaries(st.sampled_from("abc"), st.integers(0, 2), max_size=3),
        st.one_of(st.none(), st.sampled_from(["k1", "k2", "k3", "k4"])),
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=150, deadline=None)
@given(histories, st.lists(st.integers(1, 4), min_size=1, max_size=12), st.data())
def test_braze_ends_with_the_latest_values_and_each_event_once_however_it_is_replayed(
    history: list[tuple[dict[str, int], str | None]], chunks: list[int], data: st.DataObject
) -> None:
    items = [
        record(offset, attributes, () if key is None else (("e", key),))
        for offset, (attributes, key) in enumerate(history)
    ]
    braze: dict[str, int] = {}
    events: list[str] = []
    with StateStore.open(None, 4) as store:
        store.load(1)
        state = state_of(store)

        def send(batch: list[Item]) -> None:
            screened = state.screen(USER, batch, PARTITIONS)
            for item in screened.kept:  # as Braze applies a request: in order, last value wins
                braze.update(item.update.attributes)  # type: ignore[attr-defined]
                events.extend(item.update.event_keys)  # type: ignore[attr-defined]
            state.confirm(screened.kept, PARTITIONS)

        position = 0
        for size in chunks:  # deliver the history in chunks, replaying a range now and then
            send(items[position : position + size])
            position += size
            start = data.draw(st.integers(0, len(items)))
            send(items[start:position])
        send(items[position:])
        send(items)
    latest = {name: value for attributes, _ in history for name, value in attributes.items()}
    assert braze == latest
    assert sorted(events) == sorted({key for _, key in history if key is not None})


def test_only_what_braze_accepted_is_recorded(store: StateStore) -> None:
    state = state_of(store)
    items = [record(1, {"a": 1}, (("e", "k1"),)), record(2, {"b": 1}, (("e", "k2"),))]
    screened = state.screen(USER, items, PARTITIONS)
    state.confirm(screened.kept[1:], PARTITIONS)  # Braze named the first in `errors`
    again = state.screen(USER, [record(3, {"a": 1, "b": 1}, (("e", "k1"), ("e", "k2")))], 3)
    (kept,) = again.kept
    assert (dict(kept.update.attributes), kept.update.event_keys) == ({"a": 1}, ("k1",))  # type: ignore[attr-defined]


def test_events_left_out_after_screening_are_not_recorded(store: StateStore) -> None:
    state = state_of(store)
    (kept,) = state.screen(USER, [record(1, {"a": 1}, (("e", "k"),))], PARTITIONS).kept
    state.confirm([kept._replace(update=kept.update.without_events())], PARTITIONS)  # type: ignore[attr-defined]
    again = state.screen(USER, [record(2, {"a": 1}, (("e", "k"),))], PARTITIONS)
    assert [item.update.event_keys for item in again.kept] == [("k",)]  # type: ignore[attr-defined]


def test_a_partition_reloaded_between_screening_and_answer_is_confirmed_against_its_new_state(
    store: StateStore,
) -> None:
    state = state_of(store)
    deliver(state, [record(1, {"a": 1})])
    restored = store.get(1, state_key(USER))
    screened = state.screen(USER, [record(2, {"b": 2})], PARTITIONS)
    assert restored is not None
    store.load(1, [(state_key(USER), restored)])  # revoked and assigned again, restored
    records = state.confirm(screened.kept, PARTITIONS)
    assert StateValue(records[1][0][1]).attributes == 2


def test_screening_twice_before_the_answer_records_each_answer(store: StateStore) -> None:
    state = state_of(store)
    first = state.screen(USER, [record(1, {"a": 1})], PARTITIONS)
    second = state.screen(USER, [record(1, {"a": 1}), record(2, {"b": 1})], PARTITIONS)
    state.confirm(first.kept, PARTITIONS)
    state.confirm(second.kept[1:], PARTITIONS)
    assert state.screen(USER, [record(3, {"a": 1, "b": 1})], PARTITIONS).kept == []
