"""Logs: structured, with e-mail addresses and phone numbers redacted."""

from __future__ import annotations

import logging

import orjson
import pytest

from connector.logs import JsonFormatter, TextFormatter, redact


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("lead from jane.doe+q@example.co.uk failed", "lead from <email> failed"),
        ("call +1 555 0100 now", "call <phone> now"),
        ("call (512) 555-0100", "call <phone>"),
        ("phone 020 7946 0958", "phone <phone>"),
        ("partition 3 offset 1234567890123", "partition 3 offset 1234567890123"),
    ],
)
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected


def _record(msg: str, **extra: object) -> logging.LogRecord:
    record = logging.makeLogRecord({"msg": msg, "levelname": "WARNING", "name": "connector.x"})
    record.__dict__.update(extra)
    return record


def test_json_lines_carry_fields_and_redact_them() -> None:
    line = JsonFormatter().format(_record("publish failed for a@b.co", topic="t", email="c@d.io"))
    entry = orjson.loads(line)
    assert entry["msg"] == "publish failed for <email>"
    assert entry["topic"] == "t"
    assert entry["email"] == "<email>"
    assert entry["level"] == "warning"


def test_text_lines_are_short_and_redacted() -> None:
    line = TextFormatter().format(_record("hello +44 20 7946 0958", partition=2))
    assert line == "warning connector.x: hello <phone> partition=2"
