"""The native plan's intake: a consumed record's headers and value, read as the worker reads them.

`NativePlan.take` reads the receiver's headers itself; whatever it takes must be what
`record_facts` and the Python mapping give, and whatever else it must leave to Python (None).
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.mapping import load_mapping
from connector.mapping_results import BrazeUpdate, Filtered
from connector.mapping_rules import MappingFailure
from connector.worker import map_python, record_facts

MAPPING = load_mapping()
LEAD = orjson.dumps(
    {
        "user_info": {"email": "Ada@Example.com"},
        "results": [{"title": "Score", "value": 72}, {"title": "Outcome", "value": "Growth"}],
        "calc_name": "Plan finder",
        "created_at": "2026-03-01T10:00:00.000Z",
    }
)
Headers = list[tuple[str, bytes | None]]


def receiver_headers(
    content_type: bytes | None = b"application/json",
    received_at: bytes | None = b"1767225600000",
    source: bytes | None = b"default",
) -> Headers:
    return [("content-type", content_type), ("received-at", received_at), ("source", source)]


def python_take(headers: Headers, value: bytes | None) -> Any:
    """What the worker's Python path gives: (mapped, received_at_ms), or the failure."""
    content_type, label, received_at_ms = record_facts(headers)
    try:
        mapped = map_python(MAPPING, value or b"", content_type, label, received_at_ms)
    except MappingFailure as failure:
        return failure
    return mapped, received_at_ms


def native_take(headers: Headers, value: bytes | None) -> Any:
    assert MAPPING.native is not None
    return MAPPING.native.take(headers, value)


def strictly(found: Any) -> Any:
    """A form that tells 1, 1.0 and True apart, and dict order."""
    if isinstance(found, tuple):
        return tuple(strictly(item) for item in found)
    if isinstance(found, BrazeUpdate):
        return (
            "update",
            found.user_key,
            strictly(found.identity),
            strictly(found.attributes),
            strictly(found.events),
            strictly(found.attribute_object()),
            strictly(found.event_objects()),
        )
    if isinstance(found, Filtered):
        return ("filtered", found.rule)
    if isinstance(found, dict):
        return ("dict", [(key, strictly(value)) for key, value in found.items()])
    if isinstance(found, list):
        return ("list", [strictly(item) for item in found])
    return (type(found).__name__, found)


def test_the_receivers_record_is_taken_natively_as_python_takes_it() -> None:
    headers = receiver_headers()
    taken = native_take(headers, LEAD)
    assert taken is not None
    assert strictly(taken) == strictly(python_take(headers, LEAD))
    assert taken[1] == 1_767_225_600_000


@pytest.mark.parametrize(
    ("headers", "received_at"),
    [
        (receiver_headers(content_type=None), 1_767_225_600_000),
        (receiver_headers(content_type=b""), 1_767_225_600_000),
        (receiver_headers(source=None), 1_767_225_600_000),
        (receiver_headers(source=b""), 1_767_225_600_000),
        (receiver_headers(source=b"acme"), 1_767_225_600_000),
        (receiver_headers(received_at=None), None),
        (receiver_headers(received_at=b""), None),
        (receiver_headers(received_at=b"12a"), None),
        (receiver_headers(received_at=b"-5"), None),
        (receiver_headers(received_at=b"1" * 20), None),  # 20 digits: record_facts ignores it
        ([*receiver_headers(), ("source", b"later")], 1_767_225_600_000),  # the first counts
    ],
)
def test_header_values_are_read_as_record_facts_reads_them(
    headers: Headers, received_at: int | None
) -> None:
    taken = native_take(headers, LEAD)
    assert taken is not None
    assert taken[1] == received_at
    assert strictly(taken) == strictly(python_take(headers, LEAD))


@pytest.mark.parametrize(
    "headers",
    [
        receiver_headers(content_type=b"application/x-www-form-urlencoded"),
        receiver_headers(content_type=b"application/json; charset=utf-8"),
        receiver_headers(source=b"\xff\xfe"),  # Python reads it with replacement characters
        receiver_headers(received_at=b"9" * 19),  # more than 64 bits: Python's int() takes it
        [("received-at", b"1"), ("content-type", b"application/json"), ("source", b"x")],
        receiver_headers()[:2],
        [],
    ],
)
def test_records_not_in_the_receivers_plain_form_are_left_to_python(headers: Headers) -> None:
    assert native_take(headers, LEAD) is None


@pytest.mark.parametrize("value", [None, b"", b"  ", b"[]", b"{", b'{"user_info": {}}'])
def test_records_python_fails_are_left_to_python(value: bytes | None) -> None:
    headers = receiver_headers()
    assert isinstance(python_take(headers, value), MappingFailure)
    assert native_take(headers, value) is None


HEADER_VALUES = st.one_of(
    st.none(),
    st.binary(max_size=24),
    st.sampled_from([b"application/json", b"default", b"acme", b"1767225600000", b"0"]),
    st.integers(min_value=0, max_value=10**20).map(lambda n: str(n).encode()),
)


@settings(max_examples=400, derandomize=True)
@given(HEADER_VALUES, HEADER_VALUES, HEADER_VALUES)
def test_any_header_values_give_python_s_result_or_none(
    content_type: bytes | None, received_at: bytes | None, source: bytes | None
) -> None:
    headers = receiver_headers(content_type, received_at, source)
    taken = native_take(headers, LEAD)
    if taken is not None:
        assert strictly(taken) == strictly(python_take(headers, LEAD))


def test_a_native_update_carries_its_objects_as_json_and_reads_them_back() -> None:
    native = MAPPING.native
    assert native is not None
    taken = native.take(receiver_headers(), LEAD)
    assert taken is not None
    update = taken[0]
    content_type, label, received_at = record_facts(receiver_headers())
    python = map_python(MAPPING, LEAD, content_type, label, received_at)
    assert type(update.attribute_payload) is bytes
    assert [type(one) for one in update.event_payloads] == [bytes]
    assert orjson.loads(update.attribute_payload) == python.attribute_payload  # type: ignore[union-attr]
    assert [orjson.loads(one) for one in update.event_payloads] == list(python.event_payloads)  # type: ignore[union-attr]
    assert not update.empty
    slim = update.without_events()  # replay's default: read back only when asked
    assert type(slim.attribute_payload) is bytes and slim.event_payloads == ()
    assert slim == python.without_events()  # type: ignore[union-attr]
    assert update == python
    assert repr(update) == repr(python)


def test_a_constant_json_would_not_carry_as_itself_is_left_to_python() -> None:
    from connector.mapping_native import constant_json

    assert constant_json("Growth") == b'"Growth"'
    assert constant_json([1, 2.5, "x", True]) == b'[1,2.5,"x",true]'
    assert constant_json(-0.0) == b"-0.0"
    assert constant_json(float("nan")) is None  # written as null
    assert constant_json((1, 2)) is None  # read back as a list
    assert constant_json(2**64) is None  # beyond what orjson writes
