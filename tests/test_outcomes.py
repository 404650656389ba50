"""Outcomes: counted for the caller and for Prometheus alike."""

from __future__ import annotations

import time

from connector.batching import Item
from connector.deadletter import Reason, SourceRecord
from connector.delivery_state import Screened
from connector.mapping import BrazeUpdate
from connector.metrics import WorkerMetrics
from connector.outcomes import Counts, Outcomes
from tests.worker_support import Letters


def sample(metrics: WorkerMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


async def test_counts_and_metrics_tell_the_same_story() -> None:
    metrics, letters = WorkerMetrics(), Letters()
    outcomes = Outcomes(metrics, letters)  # type: ignore[arg-type]
    outcomes.consumed(5)
    outcomes.mapped(3)
    outcomes.filtered("outgrow_test_lead")
    outcomes.skipped()
    record = SourceRecord("raw", 0, 4, 0, None, b"{}", ())
    await outcomes.dead_letter([(record, Reason("parse", "not JSON"))])
    await outcomes.dead_letter([])  # nothing to write: nothing counted
    now_ms = time.time_ns() // 1_000_000
    update = BrazeUpdate("external_id:a", {"external_id": "a"}, {"score": 1})
    submitted = BrazeUpdate(
        "external_id:a", {"external_id": "a"}, {"score": 2, "segment": "x"}, ({"name": "s"},)
    )
    outcomes.delivered([Item(0, 1, update, now_ms - 2_000), Item(0, 2, submitted, None)])

    assert outcomes.counts == Counts(
        consumed=5,
        delivered=2,
        dead_lettered=1,
        filtered=1,
        skipped=1,
        events_sent=1,
        attributes_sent=3,
    )
    assert letters.sent == [(record, Reason("parse", "not JSON"))]
    assert sample(metrics, "outgrow_worker_records_consumed_total") == 5
    assert sample(metrics, "outgrow_worker_records_mapped_total") == 3
    assert sample(metrics, "outgrow_worker_records_delivered_total") == 2
    assert sample(metrics, "outgrow_worker_events_sent_total") == 1
    assert sample(metrics, "outgrow_worker_attributes_sent_total") == 3
    assert sample(metrics, "outgrow_worker_records_dead_lettered_total", stage="parse") == 1
    assert sample(metrics, "outgrow_worker_records_filtered_total", rule="outgrow_test_lead") == 1
    # One latency: the record without a received-at time has none.
    assert sample(metrics, "outgrow_worker_end_to_end_seconds_count") == 1
    assert 2 <= (sample(metrics, "outgrow_worker_end_to_end_seconds_sum") or 0) < 60


def test_what_screening_left_out_is_counted_by_reason() -> None:
    metrics = WorkerMetrics()
    outcomes = Outcomes(metrics, Letters())  # type: ignore[arg-type]
    update = BrazeUpdate("external_id:a", {"external_id": "a"}, {"score": 1})
    outcomes.screened(
        Screened(
            kept=[Item(0, 3, update)],
            skipped=[Item(0, 1, update), Item(0, 2, update)],
            events_skipped=2,
            attributes_skipped_unchanged=5,
            attributes_skipped_history=1,
            unguarded=1,
        )
    )
    outcomes.screened(Screened(kept=[Item(0, 4, update)]))  # all kept: nothing counted

    assert outcomes.counts == Counts(skipped=2, events_skipped=2, attributes_skipped=6, unguarded=1)
    assert sample(metrics, "outgrow_worker_events_skipped_total") == 2
    skipped = "outgrow_worker_attributes_skipped_total"
    assert sample(metrics, skipped, why="unchanged") == 5
    assert sample(metrics, skipped, why="history") == 1
    assert sample(metrics, "outgrow_worker_records_unguarded_total") == 1
