"""Errors of the connector: one root, each subclass says whether a retry can help."""

from __future__ import annotations


class ConnectorError(Exception):
    """Root of every error the connector raises on purpose."""

    retriable: bool = False
    retry_after_s: float | None = None


class ConfigError(ConnectorError):
    """A setting is missing or invalid; the process cannot start until it is fixed."""


class PublishError(ConnectorError):
    """Kafka did not take a record."""


class KafkaUnavailable(PublishError):
    """No broker answered in time; the same record can be sent again later."""

    retriable = True


class RecordTooLarge(PublishError):
    """The record is larger than the producer or topic accepts; resending cannot help."""
