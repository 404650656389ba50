"""What became of the records a pipeline took, counted for its caller and for Prometheus alike."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from connector.batching import Item
from connector.deadletter import DeadLetters, Reason, SourceRecord
from connector.metrics import WorkerMetrics


@dataclass
class Counts:
    """Records by outcome: what a replay prints, and what the live worker's metrics add up."""

    consumed: int = 0
    delivered: int = 0
    dead_lettered: int = 0
    filtered: int = 0
    skipped: int = 0  # left out by a replay's selection


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

    def skipped(self) -> None:
        self.counts.skipped += 1

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
        self.counts.delivered += len(items)
        self.metrics.delivered.inc(len(items))
        now_ms = time.time_ns() // 1_000_000
        observe = self.metrics.end_to_end.observe
        for item in items:
            if item.received_at_ms is not None:
                observe(max(now_ms - item.received_at_ms, 0) / 1000)
