"""What a pipeline keeps current in its metrics: readiness, budget, lag of owned partitions.

No broker or sandbox: the consumer is a stand-in that owns the partitions a test gives it. The
real-broker tests in test_worker.py read the same gauges over /metrics.
"""

from __future__ import annotations

from typing import Any

from aiokafka import TopicPartition

from connector.braze import Action, AdaptiveLimiter, Answer, RateBudget
from connector.config import WorkerSettings, load
from connector.mapping import load_mapping
from connector.metrics import WorkerMetrics
from connector.pipeline import Pipeline

TOPIC = "raw"
HIGHWATER = 100


class Consumer:
    """Owns some partitions of a topic whose every partition ends at HIGHWATER."""

    def __init__(self, partitions: int, mine: set[int]) -> None:
        self.partitions = set(range(partitions))
        self.mine = mine
        self.commits: list[dict[TopicPartition, int]] = []

    def assignment(self) -> set[TopicPartition]:
        return {TopicPartition(TOPIC, p) for p in self.mine}

    def partitions_for_topic(self, topic: str) -> set[int]:
        return self.partitions

    def highwater(self, tp: TopicPartition) -> int:
        return HIGHWATER

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(offsets)


def pipeline(consumer: Consumer, **settings: Any) -> Pipeline:
    values = {"braze_rate_limit": "3000/3s", "worker_drain_timeout_s": 1, **settings}
    config = load(WorkerSettings, values)
    limiter = AdaptiveLimiter(RateBudget.parse(config.braze_rate_limit))
    return Pipeline(
        consumer,
        None,  # type: ignore[arg-type]  # nothing is sent to Braze here
        limiter,
        None,  # type: ignore[arg-type]  # nothing is dead-lettered here
        load_mapping(),
        config,
        WorkerMetrics(),
        TOPIC,
    )


def sample(line: Pipeline, name: str, **labels: str) -> float | None:
    return line.metrics.registry.get_sample_value(name, labels)


def deliver(line: Pipeline, partition: int, offsets: range) -> None:
    """Fetch and finish offsets of a partition, as records delivered to Braze would be."""
    tracker = line.trackers.of(partition)
    for offset in offsets:
        tracker.track(offset)
        tracker.finish(offset)


def test_readiness_follows_halts_and_stopping() -> None:
    line = pipeline(Consumer(3, {0}))
    assert line.check_ready(stopping=False) is None
    assert sample(line, "outgrow_worker_ready") == 1

    line.halt.enter(Answer(401, Action.HALT, "Invalid API key"))
    assert line.check_ready(stopping=False) == "Braze refuses the configuration (HTTP 401)"
    assert sample(line, "outgrow_worker_ready") == 0
    line.halt.leave()
    assert line.check_ready(stopping=False) is None
    assert sample(line, "outgrow_worker_ready") == 1

    # Stopping with partitions still to drain is ready; without any it is not.
    assert line.check_ready(stopping=True) is None
    line.consumer.mine.clear()
    assert line.check_ready(stopping=True) == "stopping"
    assert sample(line, "outgrow_worker_ready") == 0


def test_the_budget_is_the_share_of_the_partitions_owned() -> None:
    consumer = Consumer(4, {0})
    line = pipeline(consumer, braze_rate_share=0.5)
    line.assigned()
    # 3000/3 s x 0.5 x 1 of 4 partitions
    assert sample(line, "outgrow_worker_rate_budget_per_second") == 125
    assert sample(line, "outgrow_worker_rate_limit_per_second") == 125

    consumer.mine = {0, 1, 2, 3}
    line.assigned()
    assert sample(line, "outgrow_worker_rate_budget_per_second") == 500

    consumer.mine = set()
    line.assigned()
    # Owning nothing, it has no budget, so the workers' budgets add up to the deployment's.
    assert sample(line, "outgrow_worker_rate_budget_per_second") == 0


async def test_revoked_partitions_stop_reporting_lag() -> None:
    consumer = Consumer(3, {0, 1, 2})
    line = pipeline(consumer)
    for partition in (0, 1, 2):
        deliver(line, partition, range(10 * (partition + 1)))
    line.update_lag()
    lag = "outgrow_worker_consumer_lag"
    assert [sample(line, lag, partition=str(p)) for p in (0, 1, 2)] == [90, 80, 70]

    await line.revoked({1, 2})
    consumer.mine = {0}
    assert consumer.commits == [{TopicPartition(TOPIC, 1): 20, TopicPartition(TOPIC, 2): 30}]
    assert sample(line, lag, partition="1") is None
    assert sample(line, lag, partition="2") is None
    deliver(line, 0, range(10, 15))
    line.update_lag()
    assert sample(line, lag, partition="0") == 85
    assert sample(line, lag, partition="1") is None, "a revoked partition does not come back"
