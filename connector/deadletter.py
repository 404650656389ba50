"""The dead-letter topic: the original record, unchanged, with why it could not be delivered."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from aiokafka import ConsumerRecord, TopicPartition

from connector.errors import KafkaUnavailable, RecordTooLarge
from connector.logs import redact
from connector.producer import Publisher

log = logging.getLogger(__name__)

PREFIX = "dlq-"
_BACKOFF_S = (0.5, 1.0, 2.0, 5.0, 10.0)


class SourceRecord(NamedTuple):
    """A raw record as consumed, with everything the dead-letter topic keeps of it.

    A named tuple: the worker makes one per record, and a frozen dataclass costs ~3x to build.
    """

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes | None], ...]  # Kafka allows a header without a value

    @classmethod
    def consumed(cls, tp: TopicPartition, record: ConsumerRecord[bytes, bytes]) -> SourceRecord:
        """The record as a consumer handed it out."""
        headers = record.headers
        return cls(
            tp.topic,
            tp.partition,
            record.offset,
            record.timestamp,
            record.key,
            record.value or b"",
            headers if isinstance(headers, tuple) else tuple(headers),
        )

    def header(self, name: str) -> str | None:
        """The first header of that name, decoded ("" when Kafka holds it without a value), or
        None when there is none."""
        for key, value in self.headers:
            if key == name:
                return value.decode("utf-8", "replace") if value is not None else ""
        return None


@dataclass(frozen=True)
class Reason:
    """Why a record was dead-lettered."""

    stage: str  # parse, map or braze
    reason: str
    braze_status: int | None = None
    braze_message: str | None = None
    attempts: int = 1


def dead_letter_headers(
    record: SourceRecord, why: Reason, mapping_version: str
) -> list[tuple[str, bytes | None]]:
    """The original headers, then ours: where the record came from and what went wrong."""
    ours = {
        "original-topic": record.topic,
        "original-partition": str(record.partition),
        "original-offset": str(record.offset),
        "original-timestamp": str(record.timestamp_ms),
        "stage": why.stage,
        "reason": redact(why.reason)[:1000],
        "attempts": str(why.attempts),
        "time": str(time.time_ns() // 1_000_000),
        "mapping-version": mapping_version,
    }
    if why.braze_status is not None:
        ours["braze-status"] = str(why.braze_status)
    if why.braze_message:
        ours["braze-message"] = redact(why.braze_message)[:1000]
    kept = [(k, v) for k, v in record.headers if not k.startswith(PREFIX)]
    return kept + [(PREFIX + k, v.encode()) for k, v in ours.items()]


class DeadLetters:
    """Write records to the dead-letter topic, retrying until Kafka has them."""

    def __init__(self, publisher: Publisher, mapping_version: str, timeout_s: float = 10.0):
        self._publisher = publisher
        self._mapping_version = mapping_version
        self._timeout_s = timeout_s

    async def send(self, record: SourceRecord, why: Reason) -> None:
        """Publish one dead letter; retries without end, since the record must not be lost."""
        headers = dead_letter_headers(record, why, self._mapping_version)
        attempt = 0
        while True:
            try:
                await self._publisher.publish(record.key, record.value, headers, self._timeout_s)
                return
            except RecordTooLarge:
                # The record came from a topic that took it; only our headers can be too much.
                headers = headers[: len(record.headers)] + _minimal(headers)
            except KafkaUnavailable as exc:
                if attempt == 0:
                    log.warning(
                        "dead-letter topic unavailable, retrying", extra={"error": str(exc)}
                    )
                await asyncio.sleep(_BACKOFF_S[min(attempt, len(_BACKOFF_S) - 1)])
            attempt += 1

    async def send_all(self, records: Sequence[tuple[SourceRecord, Reason]]) -> None:
        """Publish several dead letters concurrently."""
        await asyncio.gather(*(self.send(record, why) for record, why in records))


# Where a dead letter's record was read: its topic, partition and offset.
ORIGIN_HEADERS = tuple(
    PREFIX + name for name in ("original-topic", "original-partition", "original-offset")
)


def _minimal(headers: list[tuple[str, bytes | None]]) -> list[tuple[str, bytes | None]]:
    keep = {*ORIGIN_HEADERS, PREFIX + "stage"}
    return [(k, v) for k, v in headers if k in keep]
