"""Intake's reading of the receiver's headers and its mapping of one record."""

from __future__ import annotations

import orjson
import pytest

from connector.deadletter import SourceRecord
from connector.intake import map_source, record_facts
from connector.mapping import BrazeUpdate, MappingFailure, load_mapping


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
