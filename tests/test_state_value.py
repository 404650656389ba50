"""The delivery state's value format: digests, encoding, bounds, and unreadable values."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector.state_value import (
    MAX_ATTRIBUTES,
    MAX_EVENT_KEYS,
    UserState,
    readable,
    state_key,
    value_digest,
)


def test_object_values_compare_whatever_their_key_order() -> None:
    assert value_digest({"a": 1, "b": 2}) == value_digest({"b": 2, "a": 1})
    assert len({value_digest(1), value_digest(1.0), value_digest(True), value_digest("1")}) == 4


def test_the_format_is_a_version_byte_counts_and_fixed_size_entries() -> None:
    state = UserState({7: (2**64 - 1, -1), 9: (5, 2**40)}, {2**63: 29_000_000})
    value = state.encode()
    assert value[:5] == struct.pack("<BHH", 1, 2, 1)
    assert len(value) == 5 + 2 * 20 + 12
    assert UserState.decode(value) == state


@pytest.mark.parametrize(
    "value", [None, b"", b"\x02\x00\x00\x00\x00", b"\x01\x01\x00\x00\x00", b"\x01\x00\x00\x00\x00!"]
)
def test_a_value_not_in_the_format_reads_as_no_state(value: bytes | None) -> None:
    assert not readable(value)
    assert UserState.decode(value) == UserState()


@given(
    st.dictionaries(
        st.integers(0, 2**32 - 1),
        st.tuples(st.integers(0, 2**64 - 1), st.integers(-(2**63), 2**63 - 1)),
        max_size=30,
    ),
    st.dictionaries(st.integers(0, 2**64 - 1), st.integers(0, 2**32 - 1), max_size=30),
)
def test_every_state_survives_encoding(
    attributes: dict[int, tuple[int, int]], events: dict[int, int]
) -> None:
    state = UserState(attributes, events)
    assert UserState.decode(state.encode()) == state


def test_digests_are_blake2b_of_the_documented_bytes() -> None:
    import hashlib

    import orjson

    def blake(data: bytes, size: int) -> int:
        return int.from_bytes(hashlib.blake2b(data, digest_size=size).digest(), "little")

    value = {"b": [1, "x"], "a": None}
    assert value_digest(value) == blake(orjson.dumps(value, option=orjson.OPT_SORT_KEYS), 8)
    assert value_digest("é") == blake('"é"'.encode(), 8)
    assert (
        state_key("email:jane@example.com")
        == hashlib.blake2b(b"email:jane@example.com", digest_size=16).digest()
    )


def test_values_json_cannot_express_have_no_digest() -> None:
    assert value_digest({1: "a key that is not text"}) is None
    assert value_digest(2**80) is None
    assert value_digest(2**63 - 1) is not None


def test_encoding_leaves_out_expired_keys_and_values_without_a_digest() -> None:
    state = UserState({1: (None, 5), 2: (7, 6)}, {10: 99, 11: 100})
    assert UserState.decode(state.encode(oldest_minute=100)) == UserState({2: (7, 6)}, {11: 100})


def test_a_value_keeps_at_most_the_newest_attributes_and_event_keys() -> None:
    attributes = {name: (name, name) for name in range(MAX_ATTRIBUTES + 3)}
    events = {key: key for key in range(MAX_EVENT_KEYS + 3)}
    decoded = UserState.decode(UserState(dict(attributes), dict(events)).encode())
    assert sorted(decoded.attributes) == list(range(3, MAX_ATTRIBUTES + 3))
    assert sorted(decoded.events) == list(range(3, MAX_EVENT_KEYS + 3))
    assert len(UserState(attributes, events).encode()) < 60_000
