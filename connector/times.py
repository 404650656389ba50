"""Times given on the command line."""

from __future__ import annotations

from datetime import UTC, datetime

from connector.errors import ConfigError


def parse_time(text: str) -> datetime:
    """Read an ISO 8601 time; one without a zone is taken as UTC."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"time {text!r} is not ISO 8601, e.g. 2026-11-28T10:20:30Z") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
