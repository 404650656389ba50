"""The dead-letter topic for operators: list by reason, show one record, mark redriven ones.

A redrive re-delivers dead letters through the replay machinery. Each redriven record gets a
small marker record in the dead-letter topic naming it, so listings leave it out from then on;
a record that fails again is dead-lettered anew (it is read once, never in a loop, because a
redrive reads only up to the topic's end when it started).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from connector.deadletter import SourceRecord

MARKER_HEADER = "dlq-redriven"  # value: "partition:offset" of the dead letter it settles


def marker_of(record: SourceRecord) -> tuple[int, int] | None:
    """The dead letter a marker record settles, or None for an ordinary dead letter."""
    value = record.header(MARKER_HEADER)
    if value is None:
        return None
    partition, _, offset = value.partition(":")
    if not partition.isdigit() or not offset.isdigit():
        return None
    return int(partition), int(offset)


def marker_headers(record: SourceRecord) -> list[tuple[str, bytes]]:
    """Headers of the marker that settles a redriven dead letter."""
    return [(MARKER_HEADER, f"{record.partition}:{record.offset}".encode())]


@dataclass
class Listing:
    """Open dead letters grouped by stage and reason."""

    open: list[SourceRecord] = field(default_factory=list)
    settled: set[tuple[int, int]] = field(default_factory=set)

    @classmethod
    def of(cls, records: Iterable[SourceRecord]) -> Listing:
        """Sort records into open dead letters and settled ones."""
        listing = cls()
        letters = []
        for record in records:
            settles = marker_of(record)
            if settles is None:
                letters.append(record)
            else:
                listing.settled.add(settles)
        listing.open = [r for r in letters if (r.partition, r.offset) not in listing.settled]
        return listing

    def by_reason(self) -> Counter[tuple[str, str]]:
        """(stage, reason) -> number of open dead letters."""
        return Counter(
            (r.header("dlq-stage") or "?", r.header("dlq-reason") or "?") for r in self.open
        )

    def find(self, partition: int, offset: int) -> SourceRecord | None:
        """The dead letter at that position, open or settled."""
        for record in self.open:
            if (record.partition, record.offset) == (partition, offset):
                return record
        return None
