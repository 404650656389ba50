"""What became of the records a pipeline took, counted for its caller and for Prometheus alike."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from connector.batching import Item
from connector.deadletter import DeadLetters, Reason, SourceRecord
from connector.delivery_state import Screened
from connector.metrics import WorkerMetrics


@dataclass
class Counts:
    """Records by outcome: what a replay prints, and what the live worker's metrics add up."""

    consumed: int = 0
    delivered: int = 0
    dead_lettered: int = 0
    filtered: int = 0
    skipped: int = 0  # left out by a replay's selection, or with nothing left to send
    events_sent: int = 0  # accepted by Braze
    events_skipped: int = 0  # their de-duplication key was delivered already
    attributes_sent: int = 0  # accepted by Braze
    attributes_skipped: int = 0  # unchanged, or older than what Braze confirmed
    unguarded: int = 0  # sent in full: their user keys to another partition


class Outcomes:
    """Count each record's outcome, and write the dead letters."""

    def __init__(self, metrics: WorkerMetrics, dead_letters: DeadLetters) -> None:
        self.metrics = metrics
        self.dead_letters = dead_letters
        self.counts = Counts()

    def consumed(self, records: int) -> None:
        self.counts.consumed += records
        self.metrics.consumed.inc(records)

    def mapped(self, records: int) -> None:
        self.metrics.mapped.inc(records)

    def filtered(self, rule: str) -> None:
        self.counts.filtered += 1
        self.metrics.filtered.labels(rule).inc()

    def skipped(self, records: int = 1) -> None:
        self.counts.skipped += records

    def screened(self, screened: Screened) -> None:
        """Count what screening left out of a user's records, and the records unguarded."""
        counts, metrics = self.counts, self.metrics
        if screened.skipped:
            self.skipped(len(screened.skipped))
        if events := screened.events_skipped:
            counts.events_skipped += events
            metrics.events_skipped.inc(events)
        if unchanged := screened.attributes_skipped_unchanged:
            counts.attributes_skipped += unchanged
            metrics.attributes_unchanged.inc(unchanged)
        if history := screened.attributes_skipped_history:
            counts.attributes_skipped += history
            metrics.attributes_history.inc(history)
        if screened.unguarded:
            counts.unguarded += screened.unguarded
            metrics.unguarded.inc(screened.unguarded)

    async def dead_letter(self, records: Sequence[tuple[SourceRecord, Reason]]) -> None:
        """Write the records to the dead-letter topic; retries until Kafka has them."""
        if not records:
            return
        self.counts.dead_lettered += len(records)
        for _, why in records:
            self.metrics.dead_lettered.labels(why.stage).inc()
        await self.dead_letters.send_all(records)

    def delivered(self, items: Sequence[Item]) -> None:
        """Braze applied the items' objects: count them and their end-to-end latency."""
        if not items:
            return
        counts, metrics = self.counts, self.metrics
        counts.delivered += len(items)
        metrics.delivered.inc(len(items))
        now_ms = time.time_ns() // 1_000_000
        observe = metrics.end_to_end.observe
        events = attributes = 0
        for item in items:
            update = item.update
            events += len(update.event_payloads)
            attributes += len(update.attributes)
            if item.received_at_ms is not None:
                observe(max(now_ms - item.received_at_ms, 0) / 1000)
        counts.events_sent += events
        counts.attributes_sent += attributes
        metrics.events_sent.inc(events)
        metrics.attributes_sent.inc(attributes)
