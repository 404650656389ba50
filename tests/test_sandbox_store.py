"""The profile store: lookups by Braze's identifier rules and every kind of update."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from outgrow_braze_dev.sandbox.contract import ObjectLimit, check_track
from outgrow_braze_dev.sandbox.store import Profile, ProfileStore, deep_merge, iso, set_custom

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def store() -> ProfileStore:
    return ProfileStore(recent_events=3, clock=lambda: NOW)


def send(store: ProfileStore, **arrays: list[dict[str, Any]]) -> None:
    store.apply(check_track(arrays, ObjectLimit(1_000)))


def the(store: ProfileStore, external_id: str) -> Profile:
    profile = store.by_external_id(external_id)
    assert profile is not None
    return profile


def test_an_external_id_creates_a_profile_once(store: ProfileStore) -> None:
    send(store, attributes=[{"external_id": "u1", "a": 1}, {"external_id": "u1", "b": 2}])
    assert len(store) == 1
    profile = the(store, "u1")
    assert profile.custom == {"a": 1, "b": 2}
    assert profile.created_at == NOW
    assert store.by_braze_id(profile.braze_id) is profile


def test_email_and_phone_beside_a_primary_are_written_as_fields(store: ProfileStore) -> None:
    send(store, attributes=[{"external_id": "u1", "email": "A@x.io", "phone": "+1 202 555 0100"}])
    profile = the(store, "u1")
    assert profile.fields == {"email": "A@x.io", "phone": "+1 202 555 0100"}
    assert store.by_contact("email", "a@X.io") == [profile]
    assert store.by_contact("phone", "+12025550100") == [profile]
    send(store, attributes=[{"external_id": "u1", "email": "b@x.io", "phone": None}])
    assert store.by_contact("email", "a@x.io") == []
    assert store.by_contact("phone", "+12025550100") == []
    assert store.by_contact("email", "b@x.io") == [profile]


def test_an_unknown_email_creates_an_email_only_profile(store: ProfileStore) -> None:
    send(store, attributes=[{"email": "jane@x.io", "score": 1}])
    [profile] = store.by_contact("email", "jane@x.io")
    assert (profile.external_id, profile.aliases) == (None, {})
    send(store, events=[{"email": "JANE@x.io", "name": "quiz", "time": "2026-01-01"}])
    assert len(store) == 1
    assert profile.events["quiz"].count == 1


def test_a_shared_email_goes_to_the_latest_profile_with_an_external_id(
    store: ProfileStore,
) -> None:
    send(store, attributes=[{"external_id": "old", "email": "s@x.io"}])
    send(store, attributes=[{"external_id": "new", "email": "s@x.io"}])
    send(store, attributes=[{"external_id": "old", "touch": 1}])
    send(store, attributes=[{"email": "s@x.io", "via_email": True}])
    assert the(store, "old").custom == {"touch": 1, "via_email": True}


def test_update_only_objects_leave_unknown_users_alone(store: ProfileStore) -> None:
    send(
        store,
        attributes=[{"external_id": "u1", "_update_existing_only": True, "a": 1}],
        events=[{"braze_id": "nobody", "name": "e", "time": "2026-01-01"}],
        purchases=[
            {"user_alias": {"alias_name": "n", "alias_label": "l"}, "product_id": "p"}
            | {"currency": "USD", "price": 1, "time": "2026-01-01"}
        ],
    )
    assert len(store) == 0


def test_a_null_removes_a_field_or_attribute(store: ProfileStore) -> None:
    send(store, attributes=[{"external_id": "u1", "first_name": "Ann", "a": 1, "b": 2}])
    send(store, attributes=[{"external_id": "u1", "first_name": None, "a": None, "zz": None}])
    profile = the(store, "u1")
    assert (profile.fields, profile.custom) == ({}, {"b": 2})


@pytest.mark.parametrize(
    ("current", "update", "expected"),
    [
        (None, {"inc": 2}, 2),
        (5, {"inc": -1.5}, 3.5),
        ("text", {"inc": 1}, 1),
        (True, {"inc": 1}, 1),
        (None, ["a", "b", "a"], ["b", "a"]),
        ([1, True, "1"], {"add": [1]}, [True, "1", 1]),
        (["a", "b"], {"add": ["a", "c"]}, ["b", "a", "c"]),
        (["a", "b"], {"remove": ["a", "zz"]}, ["b"]),
        ("not a list", {"add": ["a"]}, ["a"]),
        ([{"id": 1}], [{"id": 2}], [{"id": 2}]),
        (
            [{"id": 1, "v": "a"}, {"id": 2, "v": "b"}],
            {
                "$remove": [{"$identifier_key": "id", "$identifier_value": 1}],
                "$update": [
                    {"$identifier_key": "id", "$identifier_value": 2, "$new_object": {"v": "c"}}
                ],
                "$add": [{"id": 3}],
            },
            [{"id": 2, "v": "c"}, {"id": 3}],
        ),
        ({"a": 1}, {"b": 2}, {"b": 2}),
    ],
)
def test_custom_attribute_updates(current: Any, update: Any, expected: Any) -> None:
    custom = {} if current is None else {"attr": current}
    set_custom(custom, "attr", update, merge=False)
    assert custom["attr"] == expected


def test_arrays_keep_at_most_500_values_dropping_the_oldest() -> None:
    custom: dict[str, Any] = {"attr": list(range(500))}
    set_custom(custom, "attr", {"add": [500, 501]}, merge=False)
    assert custom["attr"][0] == 2
    assert len(custom["attr"]) == 500


def test_merge_objects_merges_level_by_level() -> None:
    current = {"a": {"x": 1, "y": {"deep": 1}}, "keep": True}
    update = {"a": {"y": {"deeper": 2}, "z": 3}, "when": {"$time": "2026-01-01"}}
    merged = deep_merge(current, update)
    assert merged == {
        "a": {"x": 1, "y": {"deep": 1, "deeper": 2}, "z": 3},
        "keep": True,
        "when": {"$time": "2026-01-01"},
    }
    assert current == {"a": {"x": 1, "y": {"deep": 1}}, "keep": True}
    custom = {"attr": current}
    set_custom(custom, "attr", update, merge=True)
    assert custom["attr"] == merged


def test_events_are_counted_kept_recent_and_never_in_the_future(store: ProfileStore) -> None:
    times = ["2026-01-02T00:00:00Z", "2026-01-01T00:00:00Z", "2030-01-01T00:00:00Z"]
    events = [
        {"external_id": "u1", "name": "quiz", "time": t, "properties": {"n": n}}
        for n, t in enumerate(times)
    ]
    events.append({"external_id": "u1", "name": "other", "time": "2026-01-03"})
    send(store, events=events)
    profile = the(store, "u1")
    quiz = profile.events["quiz"]
    assert (quiz.count, iso(quiz.first), quiz.last) == (3, "2026-01-01T00:00:00.000Z", NOW)
    assert [(e.name, e.properties) for e in profile.recent] == [
        ("other", {}),
        ("quiz", {"n": 2}),
        ("quiz", {"n": 1}),
    ]


def test_purchases_are_counted_by_product(store: ProfileStore) -> None:
    purchase = {"external_id": "u1", "currency": "USD", "price": 1, "time": "2026-01-01"}
    send(store, purchases=[purchase | {"product_id": "a"}] * 2 + [purchase | {"product_id": "b"}])
    profile = the(store, "u1")
    assert {name: seen.count for name, seen in profile.purchases.items()} == {"a": 2, "b": 1}


def test_recently_updated_and_clear(store: ProfileStore) -> None:
    for name in ("a", "b", "c"):
        send(store, attributes=[{"external_id": name, "x": 1}])
    send(store, attributes=[{"external_id": "a", "x": 2}])
    assert [p.external_id for p in store.recently_updated(2)] == ["a", "c"]
    store.clear()
    assert (len(store), list(store)) == (0, [])
    assert store.by_external_id("a") is None


def test_iso_writes_utc_to_the_millisecond() -> None:
    moment = datetime(2026, 1, 2, 3, 4, 5, 678_999, tzinfo=UTC)
    assert iso(moment) == "2026-01-02T03:04:05.678Z"
