"""The delivery state's value format: digests, entries found and changed in place, bounds."""

from __future__ import annotations

import hashlib
import struct

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector.state_value import (
    MAX_ATTRIBUTES,
    MAX_EVENT_KEYS,
    StateValue,
    event_digest,
    name_digest,
    readable,
    state_key,
    value_digest,
)


def test_digests_are_blake2b_of_the_documented_bytes() -> None:
    value = {"b": [1, "x"], "a": None}
    sorted_json = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    assert value_digest(value) == hashlib.blake2b(sorted_json, digest_size=8).digest()
    assert value_digest("é") == hashlib.blake2b('"é"'.encode(), digest_size=8).digest()
    assert name_digest("score") == hashlib.blake2b(b"score", digest_size=4).digest()
    assert event_digest("e", "k") == hashlib.blake2b(b"e\x00k", digest_size=8).digest()
    assert (
        state_key("email:jane@example.com")
        == hashlib.blake2b(b"email:jane@example.com", digest_size=16).digest()
    )


def test_object_values_compare_whatever_their_key_order_and_types_stay_apart() -> None:
    assert value_digest({"a": 1, "b": 2}) == value_digest({"b": 2, "a": 1})
    assert len({value_digest(1), value_digest(1.0), value_digest(True), value_digest("1")}) == 4


def test_values_json_cannot_express_have_no_digest() -> None:
    assert value_digest({1: "a key that is not text"}) is None
    assert value_digest(2**80) is None
    assert value_digest(2**63 - 1) is not None


def test_the_format_is_a_version_byte_counts_and_fixed_size_entries() -> None:
    state = StateValue()
    state.set_attribute(b"name", b"digest!!", -1)
    state.set_attribute(b"nam2", b"digest??", 2**40)
    state.add_event(b"eventkey", 29_000_000)
    value = state.encode()
    assert value == (
        struct.pack("<BHH", 1, 2, 1)
        + b"name" + b"digest!!" + struct.pack("<q", -1)
        + b"nam2" + b"digest??" + struct.pack("<q", 2**40)
        + b"eventkey" + struct.pack("<I", 29_000_000)
    )  # fmt: skip
    assert readable(value)


def test_entries_are_found_changed_and_forgotten_in_place() -> None:
    state = StateValue()
    state.add_event(b"k" * 8, 7)
    state.set_attribute(b"aaaa", b"1" * 8, 5)
    state.set_attribute(b"bbbb", b"2" * 8, 6)
    state.set_attribute(b"aaaa", b"3" * 8, 9)
    index = state.attribute(b"aaaa")
    assert (state.value_at(index), state.position_at(index)) == (b"3" * 8, 9)
    assert state.event_minute(b"k" * 8) == 7
    state.set_attribute(b"bbbb", None, 10)
    assert state.attribute(b"bbbb") == -1
    again = StateValue(state.encode())
    assert list(again.attribute_entries()) == [(b"aaaa", b"3" * 8, 9)]
    assert list(again.event_entries()) == [(b"k" * 8, 7)]


def test_a_digest_straddling_two_entries_is_not_a_match() -> None:
    state = StateValue()
    state.set_attribute(b"aaaa", b"xxxxxxxx", 0x6262626262626262)  # position bytes are "bbbbbbbb"
    state.set_attribute(b"cccc", b"yyyyyyyy", 0)
    state.add_event(b"01234567", 1)
    state.add_event(b"89abcdef", 2)
    assert state.attribute(b"bbbb") == -1
    assert state.attribute(b"xxxx") == -1
    assert state.event_minute(b"456789ab") == -1


def test_encoding_leaves_out_expired_keys() -> None:
    state = StateValue()
    for key, minute in ((b"old-key1", 99), (b"new-key1", 100), (b"new-key2", 101)):
        state.add_event(key, minute)
    decoded = StateValue(state.encode(oldest_minute=100))
    assert list(decoded.event_entries()) == [(b"new-key1", 100), (b"new-key2", 101)]


def test_a_key_confirmed_again_becomes_the_newest() -> None:
    state = StateValue()
    state.add_event(b"first-k1", 1)
    state.add_event(b"second-k", 2)
    state.add_event(b"first-k1", 3)
    assert [key for key, _ in state.event_entries()] == [b"second-k", b"first-k1"]


def test_a_value_keeps_at_most_the_newest_attributes_and_event_keys() -> None:
    state = StateValue()
    for n in range(MAX_ATTRIBUTES + 3):
        state.set_attribute(n.to_bytes(4, "little"), b"v" * 8, n)
    for n in range(MAX_EVENT_KEYS + 3):
        state.add_event(n.to_bytes(8, "little"), n)
    value = state.encode()
    assert len(value) < 60_000
    decoded = StateValue(value)
    positions = sorted(position for _, _, position in decoded.attribute_entries())
    assert positions == list(range(3, MAX_ATTRIBUTES + 3))
    assert [minute for _, minute in decoded.event_entries()] == list(range(3, MAX_EVENT_KEYS + 3))


@pytest.mark.parametrize(
    "value", [None, b"", b"\x02\x00\x00\x00\x00", b"\x01\x01\x00\x00\x00", b"\x01\x00\x00\x00\x00!"]
)
def test_a_value_not_in_the_format_reads_as_no_state(value: bytes | None) -> None:
    assert not readable(value)
    state = StateValue(value)
    assert (state.attributes, state.events, state.encode()) == (0, 0, b"\x01\x00\x00\x00\x00")


@given(
    st.dictionaries(
        st.binary(min_size=4, max_size=4),
        st.tuples(st.binary(min_size=8, max_size=8), st.integers(-(2**63), 2**63 - 1)),
        max_size=30,
    ),
    st.lists(st.binary(min_size=8, max_size=8), max_size=30, unique=True),
)
def test_every_state_survives_encoding_and_finds_each_entry(
    attributes: dict[bytes, tuple[bytes, int]], keys: list[bytes]
) -> None:
    state = StateValue()
    for name, (digest, position) in attributes.items():
        state.set_attribute(name, digest, position)
    for minute, key in enumerate(keys):
        state.add_event(key, minute)
    decoded = StateValue(state.encode())
    assert {name: (digest, at) for name, digest, at in decoded.attribute_entries()} == attributes
    for name, (digest, position) in attributes.items():
        index = decoded.attribute(name)
        assert (decoded.value_at(index), decoded.position_at(index)) == (digest, position)
    assert [decoded.event_minute(key) for key in keys] == list(range(len(keys)))
