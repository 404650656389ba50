"""The sandbox's fast paths give what its general rules give, on any input.

Each fast path skips work for the common case of a `/users/track` body (plain attributes,
plain event properties, an object named by external id or e-mail, an e-mail set again to
itself). The references below are the rules as written before the fast paths: if a fast path
ever answers differently, one of these properties fails.
"""

from __future__ import annotations

import string
from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from outgrow_braze_dev.sandbox import contract
from outgrow_braze_dev.sandbox.contract import (
    PRIMARY_IDS,
    RESERVED_EVENT_PROPERTIES,
    RESERVED_PURCHASE_PROPERTIES,
    Identity,
    ObjectLimit,
    check_attribute,
    check_attributes,
    check_properties,
    check_track,
    identify,
    parse_time,
    valid_email,
    valid_phone,
)
from outgrow_braze_dev.sandbox.errors import Refusal
from outgrow_braze_dev.sandbox.store import Profile, ProfileStore, _preferred, set_custom

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)

# Names near every boundary: empty, $, reserved, standard fields, 255 and 256 characters.
names = st.one_of(
    st.text(max_size=6),
    st.sampled_from(
        [
            "",
            "$x",
            "time",
            "event_name",
            "price",
            "email",
            "phone",
            "gender",
            "dob",
            "external_id",
            "_merge_objects",
            "a" * 255,
            "a" * 256,
            "score",
        ]
    ),
)
texts = st.one_of(st.text(max_size=8), st.sampled_from(["x" * 255, "x" * 256]))
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), texts)
values = st.one_of(
    scalars,
    st.lists(scalars, max_size=3),
    st.dictionaries(names, scalars, max_size=3),
    st.just({"inc": 1}),
    st.just({"add": ["a"], "remove": ["b"]}),
)


def outcome(check: Any, *args: Any) -> Any:
    """What a check gives, or the type of what it raises (too large a number for orjson)."""
    try:
        return check(*args)
    except (TypeError, ValueError) as exc:
        return type(exc)


def reference_check_attributes(item: dict[str, Any]) -> contract.Problem:
    problem = contract._check_flags(item, ("_update_existing_only", "_merge_objects"))
    for key, value in item.items():
        if problem is not None:
            break
        if key not in contract.META_KEYS:
            problem = check_attribute(key, value)
    return problem


def reference_check_properties(
    properties: Any, reserved: frozenset[str], max_bytes: int
) -> contract.Problem:
    if properties is None:
        return None
    if not isinstance(properties, dict):
        return "'properties' must be an object"
    nested = False
    for key, value in properties.items():
        problem = contract._check_property(key, value, reserved)
        if problem is not None:
            return problem
        nested = nested or isinstance(value, (dict, list))
    if nested and len(contract.orjson.dumps(properties)) > max_bytes:
        return f"'properties' is larger than {max_bytes // 1000} KB"
    return None


def reference_identify(item: dict[str, Any]) -> Identity | str:
    primaries = [name for name in PRIMARY_IDS if item.get(name) is not None]
    if len(primaries) > 1:
        return "give only one of 'external_id', 'user_alias' and 'braze_id' per object"
    if primaries:
        return contract._primary(primaries[0], item[primaries[0]])
    email = item.get("email")
    if email is not None:
        return Identity("email", email) if valid_email(email) else contract._BAD_EMAIL
    phone = item.get("phone")
    if phone is not None:
        return Identity("phone", phone) if valid_phone(phone) else contract._BAD_PHONE
    return "no identifier: give 'external_id', 'user_alias', 'braze_id', 'email' or 'phone'"


@given(st.dictionaries(names, values, max_size=6))
def test_attributes_fast_path_agrees_with_the_rules(item: dict[str, Any]) -> None:
    assert outcome(check_attributes, item) == outcome(reference_check_attributes, item)


@given(
    st.one_of(st.none(), scalars, st.dictionaries(names, values, max_size=6)),
    st.sampled_from([RESERVED_EVENT_PROPERTIES, RESERVED_PURCHASE_PROPERTIES]),
)
def test_properties_fast_path_agrees_with_the_rules(
    properties: Any, reserved: frozenset[str]
) -> None:
    for max_bytes in (10, 100_000):
        args = (properties, reserved, max_bytes)
        assert outcome(check_properties, *args) == outcome(reference_check_properties, *args)


identifiers = st.one_of(
    st.none(),
    st.just(""),
    st.text(max_size=5),
    st.integers(),
    st.just({"alias_label": "l", "alias_name": "n"}),
    st.just("a@b.co"),
    st.just("+1 555 0100 200"),
)


@given(
    st.fixed_dictionaries(
        {},
        optional={
            "external_id": identifiers,
            "user_alias": identifiers,
            "braze_id": identifiers,
            "email": identifiers,
            "phone": identifiers,
        },
    )
)
def test_identify_fast_path_agrees_with_the_rules(item: dict[str, Any]) -> None:
    assert identify(item) == reference_identify(item)


emails = st.one_of(
    st.text(alphabet=string.ascii_letters + "@. \n\u00a0", max_size=12),
    st.sampled_from(["a@b.c", "a@b.c\n", "a@@b.c", "a b@c.d", "a@b", "x" * 250 + "@b.cd"]),
)


@given(emails)
def test_remembered_email_answers_are_the_pattern_s(value: str) -> None:
    expected = len(value) <= contract.MAX_CHARS and bool(contract._EMAIL.match(value))
    assert valid_email(value) is expected
    assert valid_email(value) is expected  # again, from the cache


@given(
    st.one_of(
        st.text(alphabet="0123456789-T:.+Z ", max_size=30),
        st.sampled_from(["2026-01-01T00:00:00.280Z", "2026-01-01T00:00:00:280Z", "2026-01-01"]),
    )
)
def test_remembered_times_are_the_parsed_times(text: str) -> None:
    expected = contract._parse_text.__wrapped__(text)
    assert parse_time(text) == expected
    assert parse_time(text) == expected  # again, from the cache
    if expected is not None:
        assert parse_time(text).tzinfo is not None  # type: ignore[union-attr]


class ReferenceStore(ProfileStore):
    """The store without its fast paths: a copied list for lookups, every update the long way."""

    def find(self, identity: Identity) -> Profile | None:
        if identity.kind in ("email", "phone"):
            return _preferred(self.by_contact(identity.kind, str(identity.value)))
        return super().find(identity)

    def _sole_holder(self, profile: Profile, kind: str, value: Any) -> bool:
        return False

    def _apply_attributes(self, profile: Profile, fields: dict[str, Any]) -> None:
        merge = fields.get("_merge_objects") is True
        for key, value in fields.items():
            if key in contract.META_KEYS:
                continue
            if key in contract.STANDARD_FIELDS:
                self._set_field(profile, key, value)
            else:
                set_custom(profile.custom, key, value, merge)


def snapshot(store: ProfileStore) -> Any:
    def braze_ids(profiles: list[Profile]) -> list[str]:
        return [profile.braze_id for profile in profiles]

    profiles = [
        (
            p.braze_id,
            p.external_id,
            p.fields,
            p.custom,
            {name: (o.first, o.last, o.count) for name, o in p.events.items()},
            list(p.recent),
            p.touched,
        )
        for p in store
    ]
    return profiles, {key: braze_ids(held) for key, held in store._by_contact.items()}


users = st.sampled_from(
    [
        {"email": "a@b.co"},
        {"email": "A@b.co"},
        {"email": "c@d.co"},
        {"phone": "+15550100200"},
        {"external_id": "u1"},
        {"external_id": "u2"},
    ]
)
attribute_objects = st.builds(
    lambda user, extra: {**user, **extra},
    users,
    st.dictionaries(
        st.sampled_from(["email", "phone", "score", "segment", "tags"]),
        st.one_of(
            st.none(),
            st.integers(0, 3),
            st.sampled_from(["a@b.co", "c@d.co", "+15550100200", "x"]),
            st.just(["t"]),
        ),
        max_size=3,
    ),
)
event_objects = st.builds(
    lambda user, time: {**user, "name": "e", "time": time, "properties": {"score": 1}},
    users,
    st.sampled_from(["2026-01-01T00:00:00.280Z", "2026-01-01T00:00:00:280Z", "2999-01-01"]),
)


@settings(max_examples=200)
@given(
    st.lists(
        st.fixed_dictionaries(
            {
                "attributes": st.lists(attribute_objects, max_size=5),
                "events": st.lists(event_objects, max_size=3),
            }
        ),
        min_size=1,
        max_size=6,
    )
)
def test_the_store_fast_paths_leave_what_the_long_way_leaves(bodies: list[dict[str, Any]]) -> None:
    fast, slow = ProfileStore(clock=lambda: NOW), ReferenceStore(clock=lambda: NOW)
    slow._prefix = fast._prefix
    for body in bodies:
        try:
            batch = check_track(body, ObjectLimit(1_000))
        except Refusal:
            continue
        fast.apply(batch)
        slow.apply(batch)
        assert snapshot(fast) == snapshot(slow)
