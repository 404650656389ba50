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
