"""The `/users/track` rules as pure functions, and their agreement with the JSON Schemas."""

from __future__ import annotations

import json
import string
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from outgrow_braze_dev.sandbox import contract
from outgrow_braze_dev.sandbox.contract import (
    META_KEYS,
    STANDARD_FIELDS,
    Identity,
    ObjectLimit,
    check_object,
    check_track,
    identify,
    may_create,
    parse_time,
)
from outgrow_braze_dev.sandbox.errors import Refusal

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"
REQUEST = Draft202012Validator(
    json.loads((SCHEMAS / "braze-users-track.request.schema.json").read_text(encoding="utf-8"))
)
RESPONSE = Draft202012Validator(
    json.loads((SCHEMAS / "braze-users-track.response.schema.json").read_text(encoding="utf-8"))
)
LIMIT = ObjectLimit()


def _problem(array: str, item: Any) -> str | None:
    outcome = check_object(array, 0, item)
    return outcome if isinstance(outcome, str) else None


# --------------------------------------------------------------------------- identifiers


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ({"external_id": "u1", "email": "a@example.com"}, Identity("external_id", "u1")),
        ({"braze_id": "b1", "phone": "+12025550100"}, Identity("braze_id", "b1")),
        (
            {"user_alias": {"alias_name": "n", "alias_label": "l"}},
            Identity("user_alias", ("l", "n")),
        ),
        ({"email": "a@example.com", "phone": "+12025550100"}, Identity("email", "a@example.com")),
        ({"phone": "+1 202 555 0100"}, Identity("phone", "+1 202 555 0100")),
        ({"external_id": None, "email": "a@example.com"}, Identity("email", "a@example.com")),
    ],
)
def test_identify_prefers_one_primary_then_email_then_phone(
    item: dict[str, Any], expected: Identity
) -> None:
    assert identify(item) == expected


@pytest.mark.parametrize(
    "item",
    [
        {"external_id": "u1", "braze_id": "b1"},
        {"external_id": "", "a": 1},
        {"external_id": 42},
        {"user_alias": "jane"},
        {"user_alias": {"alias_name": "", "alias_label": "l"}},
        {"user_alias": {"alias_name": "n" * 237, "alias_label": "l"}},
        {"braze_id": ["b1"]},
        {"email": "jane"},
        {"phone": "12"},
        {"first_name": "Ann"},
    ],
)
def test_identify_names_what_is_wrong(item: dict[str, Any]) -> None:
    assert isinstance(identify(item), str)


def test_who_may_create_a_profile() -> None:
    by_id, by_alias = Identity("external_id", "u1"), Identity("user_alias", ("l", "n"))
    by_braze_id = Identity("braze_id", "b1")
    assert may_create("attributes", {}, by_id)
    assert not may_create("attributes", {"_update_existing_only": True}, by_id)
    assert not may_create("attributes", {}, by_alias)
    assert may_create("attributes", {"_update_existing_only": False}, by_alias)
    assert not may_create("events", {"_update_existing_only": False}, by_alias)
    assert not may_create("attributes", {"_update_existing_only": False}, by_braze_id)
    assert may_create("events", {}, Identity("email", "a@example.com"))


# --------------------------------------------------------------------------- objects


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        3.5,
        "x" * 255,
        ["a", 1, True],
        [{"id": 1}],
        {"inc": -2},
        {"add": ["a"], "remove": ["b"]},
        {"$add": [{"id": 1}], "$remove": [{"$identifier_key": "id", "$identifier_value": 1}]},
        {"$update": [{"$identifier_key": "id", "$identifier_value": 1, "$new_object": {"a": 2}}]},
        {"when": {"$time": "2026-01-01"}, "deep": {"list": [1, {"a": "b"}]}},
    ],
)
def test_custom_attribute_values_that_braze_takes(value: Any) -> None:
    assert _problem("attributes", {"external_id": "u1", "attr": value}) is None


@pytest.mark.parametrize(
    "value",
    [
        "x" * 256,
        ["a", ["nested"]],
        ["a", {"b": 1}],
        list(range(501)),
        {"inc": "1"},
        {"inc": True},
        {"add": "a"},
        {"add": [{"a": 1}]},
        {"$remove": [{"id": 1}]},
        {"$update": [{"$identifier_key": "id", "$identifier_value": 1}]},
        {"with space": 1},
        {"a": None},
        {"when": {"$time": "soon"}},
        {"when": {"$time": "2026-01-01", "extra": 1}},
        {"k": "x" * 51_000},
        [{"k": "x" * 200} for _ in range(600)],
    ],
)
def test_custom_attribute_values_that_braze_refuses(value: Any) -> None:
    assert _problem("attributes", {"external_id": "u1", "attr": value}) is not None


@pytest.mark.parametrize(
    ("name", "value", "ok"),
    [
        ("email_subscribe", "opted_in", True),
        ("email_subscribe", "yes", False),
        ("push_subscribe", None, True),
        ("gender", "f", True),
        ("gender", "female", False),
        ("dob", "1980-12-21", True),
        ("dob", "1980-13-01", False),
        ("dob", "21/12/1980", False),
        ("_merge_objects", "yes", False),
        ("_update_existing_only", 1, False),
    ],
)
def test_standard_fields_are_checked(name: str, value: Any, ok: bool) -> None:
    assert (_problem("attributes", {"external_id": "u1", name: value}) is None) is ok


def test_deeply_nested_values_are_refused_without_recursing_forever() -> None:
    deep: Any = "leaf"
    for _ in range(5_000):
        deep = {"a": deep}
    assert _problem("attributes", {"external_id": "u1", "attr": deep}) is not None
    event = {"external_id": "u1", "name": "e", "time": "2026-01-01", "properties": {"p": deep}}
    assert _problem("events", event) is not None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-05T10:00:00Z", datetime(2026, 1, 5, 10, tzinfo=UTC)),
        ("2026-01-05T10:00:00:250Z", datetime(2026, 1, 5, 10, 0, 0, 250_000, tzinfo=UTC)),
        ("2026-13-05T10:00:00:250Z", None),
        ("2026-01-05T10:00:00", datetime(2026, 1, 5, 10, tzinfo=UTC)),
        ("2026-01-05", datetime(2026, 1, 5, tzinfo=UTC)),
        ("2026-01-05T12:00:00+02:00", datetime(2026, 1, 5, 10, tzinfo=UTC)),
        ("tomorrow", None),
        ("", None),
        (1_767_600_000, None),
    ],
)
def test_parse_time_reads_iso_8601_and_braze_colon_millis(text: Any, expected: Any) -> None:
    assert parse_time(text) == expected


# --------------------------------------------------------------------------- the request


def test_the_object_limit_counts_all_arrays_or_each_array() -> None:
    item = {"external_id": "u1", "a": 1}
    body = {"attributes": [item] * 50, "events": []}
    body["events"] = [{"external_id": "u1", "name": "e", "time": "2026-01-01"}] * 26
    with pytest.raises(Refusal) as refused:
        check_track(body, LIMIT)
    assert (refused.value.status, refused.value.message) == (400, contract.TOO_MANY_OBJECTS)
    assert check_track(body, ObjectLimit(75, per_array=True)).processed("events") == 26


def test_an_array_that_is_not_a_list_refuses_the_request() -> None:
    with pytest.raises(Refusal) as refused:
        check_track({"attributes": {"external_id": "u1"}}, LIMIT)
    assert refused.value.status == 400


def test_the_response_body_has_counts_and_errors() -> None:
    body = {"attributes": [{"external_id": "u1", "a": 1}, {"a": 1}], "purchases": None}
    batch = check_track(body, LIMIT)
    assert batch.response_body() == {
        "message": "success",
        "attributes_processed": 1,
        "errors": [{"type": batch.errors[0]["type"], "input_array": "attributes", "index": 1}],
    }


# --------------------------------------------------------------------------- schemas agree

text1 = st.text(string.ascii_letters + string.digits + "-_.", min_size=1, max_size=24)
emails = st.from_regex(r"[a-z0-9._%+-]{1,16}@[a-z0-9-]{1,10}\.[a-z]{2,6}", fullmatch=True)
identifiers = st.one_of(
    st.fixed_dictionaries({"external_id": st.text(min_size=1, max_size=40)}),
    st.fixed_dictionaries(
        {"user_alias": st.fixed_dictionaries({"alias_name": text1, "alias_label": text1})},
        optional={"_update_existing_only": st.booleans()},
    ),
    st.fixed_dictionaries({"braze_id": text1}),
    st.fixed_dictionaries({"email": emails}),
    st.fixed_dictionaries({"phone": st.from_regex(r"\+1\d{10}", fullmatch=True)}),
)
scalars = st.booleans() | st.integers(-(10**9), 10**9) | st.text(max_size=255)
scalars |= st.floats(allow_nan=False, allow_infinity=False)
nested = st.recursive(
    scalars,
    lambda inner: (
        st.dictionaries(text1, inner, min_size=1, max_size=3) | st.lists(inner, max_size=3)
    ),
    max_leaves=6,
)
custom_keys = st.text(min_size=1, max_size=30).filter(
    lambda key: key not in STANDARD_FIELDS and key not in META_KEYS
)
custom_values = (
    st.none()
    | scalars
    | st.lists(scalars, max_size=5)
    | st.fixed_dictionaries({"inc": st.integers(-10, 10)})
    | st.fixed_dictionaries({"add": st.lists(scalars, max_size=3)})
    | st.dictionaries(text1, nested, min_size=2, max_size=3)
)
times = st.datetimes(datetime(2000, 1, 1), datetime(2030, 1, 1), timezones=st.just(UTC)).map(
    lambda moment: moment.isoformat()
)
properties = st.dictionaries(
    st.text(min_size=1, max_size=20).filter(
        lambda key: not key.startswith("$") and key not in contract.RESERVED_PURCHASE_PROPERTIES
    ),
    scalars | st.lists(scalars, max_size=2),
    max_size=3,
)


def _merge(parts: tuple[dict[str, Any], ...]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for part in parts:
        merged.update(part)
    return merged


attributes = st.tuples(st.dictionaries(custom_keys, custom_values, max_size=4), identifiers).map(
    _merge
)
events = st.tuples(
    identifiers,
    st.fixed_dictionaries({"name": st.text(min_size=1, max_size=40), "time": times}),
    st.fixed_dictionaries({}, optional={"properties": properties, "app_id": text1}),
).map(_merge)
purchases = st.tuples(
    identifiers,
    st.fixed_dictionaries(
        {
            "product_id": text1,
            "currency": st.sampled_from(["USD", "EUR", "JPY"]),
            "price": st.floats(0, 1e6) | st.integers(0, 10**6),
            "time": times,
        },
        optional={"quantity": st.integers(1, 100), "properties": properties},
    ),
).map(_merge)
bodies = st.fixed_dictionaries(
    {},
    optional={
        "attributes": st.lists(attributes, min_size=1, max_size=4),
        "events": st.lists(events, min_size=1, max_size=4),
        "purchases": st.lists(purchases, min_size=1, max_size=4),
    },
).filter(bool)


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=bodies)
def test_bodies_the_schema_accepts_are_applied_without_errors(body: dict[str, Any]) -> None:
    assert REQUEST.is_valid(body), [error.message for error in REQUEST.iter_errors(body)]
    batch = check_track(body, LIMIT)
    assert batch.errors == []
    assert batch.counts == {array: len(items) for array, items in body.items()}
    RESPONSE.validate(batch.response_body())


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=10,
)
object_keys = st.sampled_from([*contract.PRIMARY_IDS, "email", "name", "time"]) | st.text(
    max_size=5
)
track_like = st.dictionaries(
    st.sampled_from(contract.ARRAYS),
    st.lists(st.dictionaries(object_keys, json_values, max_size=4), max_size=4),
    max_size=3,
)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=json_values | track_like)
def test_any_document_gets_an_answer_in_the_response_schema(body: Any) -> None:
    try:
        answer = check_track(body, LIMIT).response_body()
    except Refusal as refusal:
        assert refusal.status == 400
        answer = refusal.body()
    RESPONSE.validate(answer)
