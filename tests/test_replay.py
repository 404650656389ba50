"""Replay against the real broker: ranges, filters, dry runs."""

from __future__ import annotations

import asyncio
import io
import time
from datetime import UTC, datetime

import orjson
import pytest

from connector.errors import ConfigError
from connector.mapping import load_mapping
from connector.replay import (
    Range,
    Selection,
    dry_run,
    make_plan,
    parse_offsets,
    parse_time,
    replay_consumer,
)
from tests.kafka_support import fresh_topics
from tests.worker_support import Pipeline, lead, pipeline


def test_offset_bounds_and_times_parse() -> None:
    assert parse_offsets("0:12, 3:7") == {0: 12, 3: 7}
    assert parse_offsets(None) == {}
    with pytest.raises(ConfigError, match="partition:offset"):
        parse_offsets("0-12")
    assert parse_time("2026-11-28T10:00:00Z") == datetime(2026, 11, 28, 10, tzinfo=UTC)
    assert parse_time("2026-11-28T10:00:00") == datetime(2026, 11, 28, 10, tzinfo=UTC)
    with pytest.raises(ConfigError, match="ISO 8601"):
        parse_time("yesterday")


async def _two_batches(line: Pipeline) -> datetime:
    """Produce round 0, wait, produce round 1; return a time between them."""
    await line.produce([lead(u, 0) for u in range(20)])
    await asyncio.sleep(1.0)
    middle = datetime.now(UTC)
    await asyncio.sleep(1.0)
    await line.produce([lead(u, 1) for u in range(20)])
    return middle


async def _dry(line: Pipeline, bounds: Range, selection: Selection) -> list[dict[str, object]]:
    consumer = replay_consumer(line.topics.kafka, line.topics.topics)
    await consumer.start()
    try:
        plan = await make_plan(consumer, line.topics.raw, bounds)
        out = io.StringIO()
        await dry_run(consumer, plan, load_mapping(None), selection, out)
    finally:
        await consumer.stop()
    return [orjson.loads(text) for text in out.getvalue().splitlines()]


async def test_dry_run_of_a_time_window_prints_exactly_that_window(bootstrap_servers: str) -> None:
    async with pipeline(bootstrap_servers) as line:
        middle = await _two_batches(line)
        lines = await _dry(line, Range(from_time=middle), Selection())
        before = await _dry(line, Range(to_time=middle), Selection())
        stats = line.sandbox.state.stats.snapshot()
    scores = sorted(entry["attributes"][0]["outgrow_quiz_score"] for entry in lines)
    assert scores == sorted(1000 + u for u in range(20))
    assert sorted(e["attributes"][0]["outgrow_quiz_score"] for e in before) == list(range(20))
    assert all("events" not in entry for entry in lines), "attributes only by default"
    assert stats["requests"] == {}, "a dry run sends nothing"


async def test_dry_run_filters_by_identity_and_can_include_events(bootstrap_servers: str) -> None:
    async with pipeline(bootstrap_servers) as line:
        await _two_batches(line)
        lines = await _dry(line, Range(), Selection(identity="user-7", with_events=True))
    assert len(lines) == 2
    assert {entry["attributes"][0]["external_id"] for entry in lines} == {"user-7"}
    assert all(entry["events"][0]["name"] == "outgrow_submission" for entry in lines)


async def test_explicit_offset_bounds_win_over_the_retained_range(bootstrap_servers: str) -> None:
    topics = await fresh_topics(bootstrap_servers, partitions=1)
    consumer = replay_consumer(topics.kafka, topics.topics)
    await consumer.start()
    try:
        empty = await make_plan(consumer, topics.raw, Range(from_offsets={0: 5}))
        assert (empty.starts, empty.ends, empty.total) == ({0: 0}, {0: 0}, 0)
        with pytest.raises(ConfigError, match="does not exist"):
            await make_plan(consumer, "no.such.topic." + str(time.time_ns()), Range())
    finally:
        await consumer.stop()
