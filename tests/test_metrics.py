"""The services' metrics: which series exist from start-up, and which go away."""

from __future__ import annotations

from connector.metrics import DEAD_LETTER_STAGES, WorkerMetrics

DEAD_LETTERED = "outgrow_worker_records_dead_lettered_total"
LAG = "outgrow_worker_consumer_lag"


def test_every_dead_letter_stage_is_exported_at_zero_before_the_first_dead_letter() -> None:
    metrics = WorkerMetrics()
    registry = metrics.registry
    assert DEAD_LETTER_STAGES == ("parse", "map", "braze")
    for stage in DEAD_LETTER_STAGES:
        assert registry.get_sample_value(DEAD_LETTERED, {"stage": stage}) == 0
        assert f'{DEAD_LETTERED}{{stage="{stage}"}} 0.0' in metrics.render().decode()
    metrics.dead_lettered.labels("braze").inc()
    assert registry.get_sample_value(DEAD_LETTERED, {"stage": "braze"}) == 1


def test_forgetting_partitions_drops_their_lag_and_keeps_the_others() -> None:
    metrics = WorkerMetrics()
    for partition, lag in ((0, 5), (1, 7), (2, 9)):
        metrics.lag.labels(str(partition)).set(lag)
    metrics.forget_partitions([1, 4])  # 4 never had a series: nothing to drop, no error
    registry = metrics.registry
    assert registry.get_sample_value(LAG, {"partition": "1"}) is None
    assert registry.get_sample_value(LAG, {"partition": "0"}) == 5
    assert registry.get_sample_value(LAG, {"partition": "2"}) == 9
    assert 'partition="1"' not in metrics.render().decode()


def test_readiness_and_budget_are_exported_without_labels() -> None:
    text = WorkerMetrics().render().decode()
    assert "\noutgrow_worker_ready 0.0\n" in text  # until the worker says otherwise
    assert "\noutgrow_worker_rate_budget_per_second 0.0\n" in text  # until partitions come


def test_the_delivery_states_series_exist_from_start_up() -> None:
    metrics = WorkerMetrics()
    registry = metrics.registry
    skipped = "outgrow_worker_attributes_skipped_total"
    for why in ("unchanged", "history"):
        assert registry.get_sample_value(skipped, {"why": why}) == 0
    for name in (
        "outgrow_worker_events_sent_total",
        "outgrow_worker_events_skipped_total",
        "outgrow_worker_attributes_sent_total",
        "outgrow_worker_records_unguarded_total",
        "outgrow_worker_state_writes_total",
        "outgrow_worker_state_restore_seconds_count",
    ):
        assert registry.get_sample_value(name) == 0, name
    metrics.state_users.labels("3").set(12)
    metrics.forget_partitions([3])
    assert registry.get_sample_value("outgrow_worker_state_users", {"partition": "3"}) is None
