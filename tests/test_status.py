"""`status`: lag, state size and dead letters read from the real broker, readiness from a real
worker."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from connector.deadletter import Reason, SourceRecord, dead_letter_headers
from connector.status import Service, StateSize, collect, probe
from connector.topics import PartitionMismatch
from tests.cli_support import kafka_options, run_cli
from tests.worker_support import Pipeline, commit, free_port, lead, pipeline

Headers = list[tuple[str, bytes]]


async def produce_to(line: Pipeline, topic: str, records: list[tuple[int, Headers]]) -> None:
    """Write one record per (partition, headers) entry."""
    producer = AIOKafkaProducer(bootstrap_servers=line.bootstrap)
    await producer.start()
    try:
        for partition, headers in records:
            await producer.send_and_wait(topic, b"{}", partition=partition, headers=headers)
    finally:
        await producer.stop()


async def produce_state(line: Pipeline, topic: str, partitions: list[int]) -> None:
    """Write one keyed record (a compacted topic refuses others) per entry, to that partition."""
    producer = AIOKafkaProducer(bootstrap_servers=line.bootstrap)
    await producer.start()
    try:
        for n, partition in enumerate(partitions):
            await producer.send_and_wait(topic, b"v", key=b"user-%d" % n, partition=partition)
    finally:
        await producer.stop()


def dead_letter(stage: str, reason: str, status: int | None = None) -> list[tuple[str, bytes]]:
    record = SourceRecord("raw", 0, 7, int(time.time() * 1000), b"k", b"{}", ())
    return dead_letter_headers(record, Reason(stage, reason, braze_status=status), "v1")


async def wait_for_readiness(url: str, state: str, timeout_s: float = 30) -> Service:
    async with asyncio.timeout(timeout_s):
        while (answer := await probe("worker", url)).state != state:
            await asyncio.sleep(0.2)
    return answer


async def test_lag_and_dead_letters_are_counted_exactly(bootstrap_servers: str) -> None:
    async with pipeline(bootstrap_servers) as line:
        await produce_to(line, line.topics.raw, [(0, [])] * 5 + [(1, [])] * 3)
        await commit(line, {0: 2, 1: 3})
        letters = [dead_letter("map", "no identity")] * 3
        letters += [dead_letter("braze", "invalid email", 400)] * 2
        await produce_to(
            line, line.topics.topics.dlq_topic, [(i % 3, h) for i, h in enumerate(letters)]
        )
        await produce_state(line, line.topics.topics.state_topic, [0, 0, 0, 0, 2])
        nobody = f"http://127.0.0.1:{free_port()}"

        status = await collect(
            line.topics.kafka, line.topics.topics, line.group, {"worker": nobody}
        )

    assert [(p.partition, p.committed, p.end, p.lag) for p in status.partitions] == [
        (0, 2, 5, 3),
        (1, 3, 3, 0),
        (2, None, 0, 0),
    ]
    assert status.total_lag == 3
    assert status.state == (StateSize(0, 4), StateSize(1, 0), StateSize(2, 1))
    assert status.state_note is None
    assert [p["state_records"] for p in status.as_json()["partitions"]] == [4, 0, 1]
    assert status.as_json()["state_records_total"] == 5
    assert status.group is not None and status.group.state == "Empty"
    assert [(d.count, d.stage, d.reason) for d in status.dead_letters] == [
        (3, "map", "no identity"),
        (2, "braze", "invalid email"),
    ]
    assert status.services == (Service("worker", nobody, "unreachable", status.services[0].reason),)
    assert "cannot connect" in (status.services[0].reason or "")
    assert status.exit_code == 0, "an unreachable service is reported, not fatal"


async def test_the_command_reports_a_ready_worker_then_a_halted_one(
    bootstrap_servers: str, capsys: pytest.CaptureFixture[str]
) -> None:
    async with pipeline(bootstrap_servers) as line:
        await line.produce([lead(u, 0) for u in range(10)])
        worker = line.start_worker()
        await line.all_committed()
        worker_url = f"http://127.0.0.1:{worker.port}"
        await wait_for_readiness(worker_url, "ready")
        urls = ["--worker-url", worker_url, "--receiver-url", f"http://127.0.0.1:{free_port()}"]

        ready = await run_cli(capsys, "status", *kafka_options(line, state=True), *urls, "--json")
        assert ready.code == 0, ready.out + ready.err
        report = json.loads(ready.out)
        services = {s["name"]: s["state"] for s in report["services"]}
        assert services == {"worker": "ready", "receiver": "unreachable"}
        assert report["total_lag"] == 0 and report["dead_letters_total"] == 0
        assert report["state_topic"] == line.topics.topics.state_topic
        assert report["state_note"] is None
        assert report["group"]["state"] == "Stable" and len(report["group"]["members"]) == 1

        await worker.halt()
        await line.produce([lead(u, 1) for u in range(4)])
        halted = line.start_worker(braze_api_key="a-key-braze-refuses")
        halted_url = f"http://127.0.0.1:{halted.port}"
        await wait_for_readiness(halted_url, "not_ready")
        urls[1] = halted_url

        refused = await run_cli(capsys, "status", *kafka_options(line, state=True), *urls)
    assert refused.code == 1
    worker_line = next(line for line in refused.out.splitlines() if "worker " in line)
    assert "not_ready" in worker_line and "401" in worker_line
    assert "lag 4" in refused.out
    assert "state records" in refused.out
    assert "a-key-braze-refuses" not in refused.out


async def test_an_unreachable_broker_is_reported_with_exit_1(
    capsys: pytest.CaptureFixture[str],
) -> None:
    dead = f"127.0.0.1:{free_port()}"
    result = await run_cli(
        capsys, "status", "--kafka-bootstrap-servers", dead, "--worker-url", "http://127.0.0.1:1"
    )
    assert result.code == 1
    assert f"cannot reach Kafka at {dead}" in result.out
    assert "Services" in result.out


async def test_a_missing_or_mispartitioned_state_topic_is_noted_not_fatal(
    bootstrap_servers: str, capsys: pytest.CaptureFixture[str]
) -> None:
    async with pipeline(bootstrap_servers) as line:
        missing = f"missing.state.{uuid.uuid4().hex[:8]}"
        options = [*kafka_options(line), "--state-topic", missing, "--worker-url", "http://x:1"]
        result = await run_cli(capsys, "status", *options)
        assert result.code == 0, result.err
        assert f"Delivery state: state topic {missing} does not exist" in result.out
        assert "topics ensure" in result.out

        fewer = line.topics.topics.model_copy(update={"state_topic": f"fewer.{missing}"})
        await produce_state_topic(line, fewer.state_topic, partitions=2)
        status = await collect(line.topics.kafka, fewer, line.group, {})
    assert status.state == (StateSize(0, 0), StateSize(1, 0))
    assert status.state_records(2) is None
    advice = PartitionMismatch(fewer.state_topic, 2, fewer.raw_topic, 3).advice()
    assert status.state_note == advice
    assert status.as_json()["state_note"] == advice
    assert status.exit_code == 0


async def produce_state_topic(line: Pipeline, name: str, partitions: int) -> None:
    """Create a compacted topic of `partitions` partitions, as a mis-sized state topic."""
    admin = AIOKafkaAdminClient(bootstrap_servers=line.bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(name, partitions, 1, topic_configs={"cleanup.policy": "compact"})]
        )
    finally:
        await admin.close()
