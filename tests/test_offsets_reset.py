"""`offsets reset --to-time`: exact offsets from timestamps; refused while the group is live."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import pytest
from aiokafka import AIOKafkaProducer

from connector.errors import ConfigError
from connector.times import parse_time
from tests.cli_support import kafka_options, run_cli
from tests.kafka_support import end_offsets
from tests.worker_support import Pipeline, commit, lead, pipeline

HOUR_MS = 3_600_000


async def produce_at(line: Pipeline, per_partition: dict[int, int], timestamp_ms: int) -> None:
    """Write `count` records to each partition, all stamped `timestamp_ms`."""
    producer = AIOKafkaProducer(bootstrap_servers=line.bootstrap)
    await producer.start()
    try:
        for partition, count in per_partition.items():
            for n in range(count):
                await producer.send_and_wait(
                    line.topics.raw, b"%d" % n, partition=partition, timestamp_ms=timestamp_ms
                )
    finally:
        await producer.stop()


def test_times_are_iso_8601_and_utc_without_a_zone() -> None:
    moment = datetime(2026, 9, 21, 22, 43, 20, tzinfo=UTC)
    assert parse_time("2026-09-21T22:43:20Z") == moment
    assert parse_time("2026-09-21T22:43:20") == moment
    assert parse_time("2026-09-22T00:43:20+02:00") == moment
    with pytest.raises(ConfigError):
        parse_time("yesterday")


async def test_a_reset_to_a_time_between_batches_commits_the_first_record_after_it(
    bootstrap_servers: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Two batches an hour apart, within the topic's retention; the reset goes between them.
    now_ms = int(time.time() * 1000)
    between = datetime.fromtimestamp((now_ms - HOUR_MS) / 1000, UTC).isoformat()
    async with pipeline(bootstrap_servers) as line:
        # Partition 1 gets nothing after the time, partition 2 nothing before it.
        await produce_at(line, {0: 3, 1: 2}, now_ms - 2 * HOUR_MS)
        await produce_at(line, {0: 2, 2: 4}, now_ms - HOUR_MS // 2)
        ends = await end_offsets(line.bootstrap, line.topics.raw)
        await commit(line, ends)
        reset = [*kafka_options(line, dlq=False), "--to-time", between]

        dry = await run_cli(capsys, "offsets", "reset", *reset, "--dry-run")
        assert dry.code == 0, dry.err
        assert "Dry run: nothing committed" in dry.out
        assert "6 records will be delivered again, 0 skipped" in dry.out
        assert await line.committed() == ends == {0: 5, 1: 2, 2: 4}

        done = await run_cli(capsys, "offsets", "reset", *reset)
        assert done.code == 0, done.err
        assert await line.committed() == {0: 3, 1: 2, 2: 0}
        assert "Committed the new offsets" in done.out


async def test_a_live_group_is_refused_and_force_waits_for_it_to_leave(
    bootstrap_servers: str, capsys: pytest.CaptureFixture[str]
) -> None:
    async with pipeline(bootstrap_servers) as line:
        await line.produce([lead(u, 0) for u in range(12)])
        first_batch_ends = await end_offsets(line.bootstrap, line.topics.raw)
        await asyncio.sleep(0.3)
        between = datetime.now(UTC).isoformat()
        await asyncio.sleep(0.3)
        await line.produce([lead(u, 1) for u in range(12)])
        worker = line.start_worker()
        await line.all_committed()
        delivered = await line.committed()
        reset = ["offsets", "reset", *kafka_options(line, dlq=False), "--to-time", between]

        refused = await run_cli(capsys, *reset)
        assert refused.code == 1
        assert "refusing to reset" in refused.err and "1 live member" in refused.err
        assert await line.committed() == delivered

        forced = asyncio.create_task(run_cli(capsys, *reset, "--force", "--wait-s", "30"))
        await asyncio.sleep(1.5)
        assert not forced.done(), "the reset must wait while the worker is a member"
        await worker.halt()
        result = await forced
        assert result.code == 0, result.err
        assert "waiting up to 30 s" in result.out
        assert await line.committed() == first_batch_ends
