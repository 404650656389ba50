"""`outgrow-braze bench replay`: dry-run replay throughput (reading and re-mapping only)."""

from __future__ import annotations

import argparse
import asyncio
import io
import statistics
import sys
import time
import uuid

import orjson

from connector.config import KafkaSettings, TopicSettings, load
from connector.mapping import load_mapping
from connector.producer import Publisher
from connector.replay import Range, Selection, dry_run, make_plan, replay_consumer
from connector.topics import ensure_topics
from outgrow_braze_dev.kafka import BrokerUnavailable, provide_broker

DEFAULT_RECORDS = 50_000


def sample_lead(n: int) -> bytes:
    """A realistic Outgrow lead, different per user."""
    user = n % 10_000
    return orjson.dumps(
        {
            "id": f"lead-{n}",
            "calc_id": "5892d26dcbff7e0b1c34bf65",
            "calc_name": "What's your marketing maturity?",
            "created_at": "2026-11-28T10:20:30.000Z",
            "user_info": {"fullName": f"User {user}", "email": f"user{user}@example.com"},
            "questions": [{"question": "Team size?", "answer": "11-50"}],
            "results": [
                {"title": "Score", "value": n % 100},
                {"title": "Outcome", "value": "Growth Stage"},
            ],
        }
    )


async def _fill(kafka: KafkaSettings, topic: str, records: int) -> None:
    headers = [("content-type", b"application/json"), ("source", b"bench")]
    async with Publisher(kafka, topic, 2 * 1024 * 1024) as publisher:
        await publisher.wait_connected(60)
        for start in range(0, records, 2_000):
            sends = [
                publisher.publish(
                    f"user{n % 10_000}@example.com".encode(),
                    sample_lead(n),
                    [*headers, ("received-at", str(time.time_ns() // 1_000_000).encode())],
                    60,
                )
                for n in range(start, min(start + 2_000, records))
            ]
            await asyncio.gather(*sends)


async def _one_run(kafka: KafkaSettings, topics: TopicSettings) -> tuple[int, float]:
    consumer = replay_consumer(kafka, topics)
    await consumer.start()
    try:
        plan = await make_plan(kafka, consumer, topics.raw_topic, Range())
        mapping = load_mapping(None)
        started = time.perf_counter()
        tally = await dry_run(consumer, plan, mapping, Selection(), io.StringIO())
        return tally.read, time.perf_counter() - started
    finally:
        await consumer.stop()


async def _bench(bootstrap: str, records: int, runs: int) -> list[float]:
    kafka = load(KafkaSettings, {"kafka_bootstrap_servers": bootstrap})
    suffix = uuid.uuid4().hex[:8]
    names = {"raw_topic": "bench.raw.", "dlq_topic": "bench.dlq.", "state_topic": "bench.state."}
    topics = load(TopicSettings, {key: name + suffix for key, name in names.items()})
    await ensure_topics(kafka, topics)
    await _fill(kafka, topics.raw_topic, records)
    rates = []
    for run in range(1, runs + 1):
        read, seconds = await _one_run(kafka, topics)
        if read != records:
            raise RuntimeError(f"run {run} read {read} records of {records}")
        rates.append(read / seconds)
        print(f"run {run}: {read} records in {seconds:.2f} s = {read / seconds:,.0f}/s")
    return rates


def run_replay_bench(args: argparse.Namespace) -> int:
    """Fill a topic, dry-run replay it `--runs` times and print the median records/s."""
    records = getattr(args, "records", None) or DEFAULT_RECORDS
    try:
        with provide_broker() as broker:
            rates = asyncio.run(_bench(broker.bootstrap_servers, records, args.runs))
    except (BrokerUnavailable, RuntimeError) as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    print(
        f"dry-run replay (read + re-map with the shipped mapping, {records} records): "
        f"median {statistics.median(rates):,.0f} records/s over {len(rates)} runs"
    )
    return 0
