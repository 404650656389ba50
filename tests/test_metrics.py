"""The services' metrics: which series exist from start-up, and which go away."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from connector.metrics import DEAD_LETTER_STAGES, WorkerMetrics, observe_all

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


@given(st.lists(st.floats(min_value=0, max_value=7200, allow_nan=False), max_size=60))
@example([0.0, 0.05, 0.1, 1.0, 3600.0, 7200.0])  # on the bounds, and past the last
def test_observing_all_at_once_exports_what_observing_one_by_one_does(amounts: list[float]) -> None:
    one_by_one, all_at_once = WorkerMetrics(), WorkerMetrics()
    for amount in amounts:
        one_by_one.end_to_end.observe(amount)
    observe_all(all_at_once.end_to_end, amounts)
    assert _samples(all_at_once, "outgrow_worker_end_to_end_seconds") == pytest.approx(
        _samples(one_by_one, "outgrow_worker_end_to_end_seconds")
    )


def _samples(metrics: WorkerMetrics, name: str) -> dict[str, float]:
    return {
        f"{sample.name}{sorted(sample.labels.items())}": sample.value
        for family in metrics.registry.collect()
        if family.name == name
        for sample in family.samples
        if not sample.name.endswith("_created")
    }
