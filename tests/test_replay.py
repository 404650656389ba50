"""Replay against the real broker: ranges, filters, dry runs."""

from __future__ import annotations

import asyncio
import io
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from aiokafka import TopicPartition

from connector.deadletter import SourceRecord
from connector.dlq import Listing
from connector.errors import ConfigError
from connector.mapping import load_mapping
from connector.replay import (
    Plan,
    Progress,
    Range,
    Selection,
    Tally,
    deliver,
    dry_run,
    make_plan,
    parse_offsets,
    replay_consumer,
)
from connector.times import parse_time
from tests.kafka_support import fresh_topics
from tests.worker_support import Pipeline, lead, pipeline, wait_for


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
        plan = await make_plan(line.topics.kafka, consumer, line.topics.raw, bounds)
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
    assert all(entry["events"][0]["name"] == "outgrow_submission" for entry in lines)
    assert stats["requests"] == {}, "a dry run sends nothing"


async def test_dry_run_filters_by_identity_and_can_leave_events_out(
    bootstrap_servers: str,
) -> None:
    async with pipeline(bootstrap_servers) as line:
        await _two_batches(line)
        lines = await _dry(line, Range(), Selection(identity="user-7"))
        bare = await _dry(line, Range(), Selection(identity="user-7", attributes_only=True))
    assert len(lines) == len(bare) == 2
    assert {entry["attributes"][0]["external_id"] for entry in lines} == {"user-7"}
    assert all(entry["events"][0]["name"] == "outgrow_submission" for entry in lines)
    assert all("events" not in entry for entry in bare)


async def test_explicit_offset_bounds_win_over_the_retained_range(bootstrap_servers: str) -> None:
    topics = await fresh_topics(bootstrap_servers, partitions=1)
    consumer = replay_consumer(topics.kafka, topics.topics)
    await consumer.start()
    try:
        empty = await make_plan(topics.kafka, consumer, topics.raw, Range(from_offsets={0: 5}))
        assert (empty.starts, empty.ends, empty.total) == ({0: 0}, {0: 0}, 0)
        with pytest.raises(ConfigError, match="does not exist"):
            await make_plan(topics.kafka, consumer, "no.such.topic." + str(time.time_ns()), Range())
    finally:
        await consumer.stop()


async def _deliver(
    line: Pipeline,
    bounds: Range,
    selection: Selection,
    mapping_path: str | None = None,
    topic: str | None = None,
    stop: asyncio.Event | None = None,
    resend: bool = False,
    **overrides: object,
) -> tuple[Tally, Plan]:
    settings = line.worker_settings(**{"worker_batch_window_ms": 5, **overrides})
    consumer = replay_consumer(line.topics.kafka, line.topics.topics)
    await consumer.start()
    try:
        plan = await make_plan(line.topics.kafka, consumer, topic or line.topics.raw, bounds)
        tally = await deliver(
            consumer,
            plan,
            load_mapping(mapping_path),
            selection,
            line.topics.kafka,
            line.topics.topics,
            settings,
            1.0,
            stop or asyncio.Event(),
            resend=resend,
        )
    finally:
        await consumer.stop()
    return tally, plan


async def test_replay_of_a_window_delivers_exactly_that_window(bootstrap_servers: str) -> None:
    async with pipeline(bootstrap_servers) as line:
        middle = await _two_batches(line)
        tally, _ = await _deliver(line, Range(to_time=middle), Selection())
        scores = {u: line.profile(u).custom["outgrow_quiz_score"] for u in range(20)}
        events = sum(
            p.events.get("outgrow_submission") is not None for p in line.sandbox.state.store
        )
    assert scores == {u: u for u in range(20)}
    assert (tally.read, tally.delivered, tally.dead_lettered) == (20, 20, 0)
    assert events == tally.events_sent == 20, "each lead's event, by default"


async def test_a_mapping_change_applied_by_replay_shows_in_profiles(
    bootstrap_servers: str, tmp_path: Path
) -> None:
    changed = tmp_path / "mapping.yaml"
    changed.write_text(
        "version: 1\n"
        "identity:\n  - external_id: external_id\n"
        "attributes:\n"
        "  outgrow_quiz_score: {from: 'results[title=Score].value', type: number}\n"
        "  outgrow_replayed: {value: true, type: boolean}\n",
        encoding="utf-8",
    )
    async with pipeline(bootstrap_servers) as line:
        await line.produce([lead(u, 0) for u in range(10)])
        await _deliver(line, Range(), Selection(), mapping_path=str(changed))
        assert all(line.profile(u).custom["outgrow_replayed"] is True for u in range(10))


async def test_replay_leaves_the_live_groups_offsets_alone(bootstrap_servers: str) -> None:
    async with pipeline(bootstrap_servers) as line:
        await line.produce([lead(u, 0) for u in range(30)])
        worker = line.start_worker()
        await line.all_committed()
        await worker.halt()
        before = await line.committed()
        await line.produce([lead(u, 1) for u in range(30)])
        tally, _ = await _deliver(line, Range(), Selection())
        # What the worker delivered may be left out now (issue 15's delivery state).
        assert tally.delivered + tally.skipped == 60 and tally.delivered >= 30
        assert await line.committed() == before


async def test_interrupted_replay_resumes_where_it_stopped(bootstrap_servers: str) -> None:
    async with pipeline(bootstrap_servers) as line:
        await line.produce([lead(u, 0) for u in range(300)])
        stop = asyncio.Event()

        async def interrupt() -> None:
            await wait_for(lambda: len(line.sandbox.state.store) >= 30, 60)
            stop.set()

        stopper = asyncio.create_task(interrupt())
        slow = {"braze_rate_limit": "60/3s", "braze_max_objects": 1}  # one record a request
        bare = Selection(attributes_only=True)
        first, plan = await _deliver(line, Range(), bare, stop=stop, **slow)
        await stopper
        assert first.read < 300, "the interruption came too late to prove anything"
        second, _ = await _deliver(line, Range(from_offsets=_resume(first, plan)), bare)
        assert first.read + second.read == 300
        assert all(line.profile(u) is not None for u in range(300))


def _resume(tally: Tally, plan: Plan) -> dict[int, int]:
    return parse_offsets(plan.resume_argument(tally.positions))


async def test_redrive_after_a_mapping_fix_empties_the_reason(
    bootstrap_servers: str, tmp_path: Path
) -> None:
    fixed = tmp_path / "fixed.yaml"
    fixed.write_text(
        "version: 1\n"
        "identity:\n  - external_id: external_id\n  - alias: {label: outgrow_lead, from: id}\n"
        "attributes:\n  outgrow_quiz_score: {from: 'results[title=Score].value', type: number}\n",
        encoding="utf-8",
    )
    anonymous = [{"id": f"anon-{n}", "results": [{"title": "Score", "value": n}]} for n in range(4)]
    async with pipeline(bootstrap_servers) as line:
        await line.produce([*anonymous, lead(1, 0)])
        worker = line.start_worker()
        await line.all_committed()
        await worker.halt()
        before = Listing.of(await _dead_letter_sources(line))
        assert sum(before.by_reason().values()) == 4
        tally, _ = await _deliver(
            line, Range(), Selection(), mapping_path=str(fixed), topic=line.topics.topics.dlq_topic
        )
        after = Listing.of(await _dead_letter_sources(line))
        again, _ = await _deliver(
            line, Range(), Selection(), mapping_path=str(fixed), topic=line.topics.topics.dlq_topic
        )
        aliases = [line.sandbox.state.store.by_alias("outgrow_lead", f"anon-{n}") for n in range(4)]
    assert tally.delivered == 4
    assert after.by_reason() == {}
    assert again.delivered == 0, "settled dead letters are not redriven twice"
    assert all(profile is not None for profile in aliases)


async def _dead_letter_sources(line: Pipeline) -> list[SourceRecord]:
    records = await line.dead_letters()
    topic = line.topics.topics.dlq_topic
    return [SourceRecord.consumed(TopicPartition(topic, r.partition), r) for r in records]


def test_progress_prints_plain_lines_off_a_terminal() -> None:
    stream = io.StringIO()
    progress = Progress(100, stream, every_s=0.0)
    progress.update(25)
    progress.close()
    line = stream.getvalue().strip()
    assert line.startswith("replay: 25/100 records, ")
    assert line.endswith(" left")


def _shipped_mapping_with(tmp_path: Path, name: str, attribute: str) -> str:
    """The shipped mapping with one more attribute (`attribute`: its rule, YAML flow style)."""
    shipped = (Path(__file__).parent.parent / "connector" / "default_mapping.yaml").read_text()
    assert "\nattributes:\n" in shipped
    changed = shipped.replace("\nattributes:\n", f"\nattributes:\n  {name}: {attribute}\n", 1)
    path = tmp_path / f"{name}.yaml"
    path.write_text(changed, encoding="utf-8")
    return str(path)


async def _delivered_by_a_worker(line: Pipeline, documents: list[dict[str, object]]) -> None:
    await line.produce(documents, by_user=True)
    worker = line.start_worker()
    await line.all_committed()
    await worker.halt()


async def test_a_replay_of_everything_delivered_sends_nothing(bootstrap_servers: str) -> None:
    async with pipeline(bootstrap_servers) as line:
        await _delivered_by_a_worker(line, [lead(u, r) for r in range(2) for u in range(20)])
        before = line.sandbox.state.stats.snapshot()["requests"]
        tally, _ = await _deliver(line, Range(), Selection())
        after = line.sandbox.state.stats.snapshot()["requests"]
        scores = {u: line.profile(u).custom["outgrow_quiz_score"] for u in range(20)}
    assert (tally.read, tally.events_sent, tally.attributes_sent) == (40, 0, 0)
    assert tally.events_skipped == 40 and tally.skipped == 40 and tally.unguarded == 0
    assert after == before, "not one request"
    assert scores == {u: 1000 + u for u in range(20)}, "no profile moved backwards"
    assert "sent 0 events, skipped 40 already delivered" in tally.line()


async def test_a_replay_with_an_added_attribute_sends_only_it(
    bootstrap_servers: str, tmp_path: Path
) -> None:
    added = _shipped_mapping_with(tmp_path, "outgrow_content_id", "{from: calc_id}")
    async with pipeline(bootstrap_servers) as line:
        await _delivered_by_a_worker(line, [lead(u, r) for r in range(2) for u in range(10)])
        tally, _ = await _deliver(line, Range(), Selection(), mapping_path=added)
        again, _ = await _deliver(line, Range(), Selection(), mapping_path=added)
        profiles = [line.profile(u) for u in range(10)]
    # Once per user: the value is the same along the history, so only its first record sends it.
    assert (tally.attributes_sent, tally.events_sent, tally.events_skipped) == (10, 0, 20)
    assert all(p.custom["outgrow_content_id"] == "5892d26dcbff7e0b1c34bf65" for p in profiles)
    assert all(p.custom["outgrow_quiz_score"] == 1000 + u for u, p in enumerate(profiles))
    assert (again.attributes_sent, again.events_sent) == (0, 0)


async def test_resend_ignores_the_state_and_sends_everything(bootstrap_servers: str) -> None:
    async with pipeline(bootstrap_servers) as line:
        await _delivered_by_a_worker(line, [lead(u, 0) for u in range(10)])
        tally, _ = await _deliver(line, Range(), Selection(), resend=True)
        counts = [line.profile(u).events["outgrow_submission"].count for u in range(10)]
    assert (tally.events_sent, tally.events_skipped, tally.delivered) == (10, 0, 10)
    assert counts == [2] * 10


async def test_a_redrive_of_map_stage_dead_letters_sends_their_events_once(
    bootstrap_servers: str, tmp_path: Path
) -> None:
    strict = _shipped_mapping_with(tmp_path, "outgrow_plan", "{from: plan_chosen, required: true}")
    async with pipeline(bootstrap_servers) as line:
        await line.produce([lead(u, 0) for u in range(4)], by_user=True)
        worker = line.start_worker(mapping_file=strict)
        await line.all_committed()
        await worker.halt()
        assert len(await line.dead_letters()) == 4 and line.profile(0) is None
        dlq = line.topics.topics.dlq_topic
        redrive, _ = await _deliver(line, Range(), Selection(), topic=dlq)
        replay, _ = await _deliver(line, Range(), Selection())
        counts = [line.profile(u).events["outgrow_submission"].count for u in range(4)]
    assert (redrive.delivered, redrive.events_sent, redrive.unguarded) == (4, 4, 0)
    assert counts == [1] * 4
    # The redrive recorded the events where the leads were first read: a replay skips them.
    assert (replay.events_sent, replay.events_skipped, replay.attributes_sent) == (0, 4, 0)
