"""Structured logging: one JSON object per line, e-mail addresses and phone numbers redacted."""

from __future__ import annotations

import logging
import re
import sys
import time
from typing import Any

import orjson

from connector.config import LogSettings

EMAIL = re.compile(r"[\w.+%-]+@[\w-]+(?:\.[\w-]+)+")
# A phone number: an optional +, then 8 to 15 digits that may be split by spaces, dots, dashes
# or brackets. Plain long integers (offsets, timestamps) are left alone unless they start with +.
PHONE = re.compile(r"(?<![\w])(?:\+\d[\d\s().-]{6,18}\d|\(?\d{2,4}\)?[\s.-]\d{2,4}[\s.-]\d{3,5})")

# Attributes every LogRecord has; anything else was passed through `extra=`.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


def redact(text: str) -> str:
    """Replace e-mail addresses and phone numbers in a text."""
    return PHONE.sub("<phone>", EMAIL.sub("<email>", text))


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for key, value in record.__dict__.items():
        if key in _STANDARD or key.startswith("_"):
            continue
        fields[key] = redact(value) if isinstance(value, str) else value
    return fields


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        entry.update(_fields(record))
        if record.exc_info:
            entry["exc"] = redact(self.formatException(record.exc_info))
        return orjson.dumps(entry, default=str).decode()


class TextFormatter(logging.Formatter):
    """Format a record as a short human line with its fields."""

    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(f"{k}={v}" for k, v in _fields(record).items())
        line = f"{record.levelname.lower():7} {record.name}: {redact(record.getMessage())}"
        line = f"{line} {fields}" if fields else line
        if record.exc_info:
            line += "\n" + redact(self.formatException(record.exc_info))
        return line


def configure(settings: LogSettings) -> None:
    """Send the connector's logs to standard error in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if settings.log_format == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    # aiokafka reports every reconnect attempt at ERROR; our own lines say what matters.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
