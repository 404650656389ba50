"""`status`: lag and dead letters read from the real broker, readiness from a real worker."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from aiokafka import AIOKafkaProducer

from connector.deadletter import Reason, SourceRecord, dead_letter_headers
from connector.status import Service, collect, probe
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

        ready = await run_cli(capsys, "status", *kafka_options(line), *urls, "--json")
        assert ready.code == 0, ready.out + ready.err
        report = json.loads(ready.out)
        services = {s["name"]: s["state"] for s in report["services"]}
        assert services == {"worker": "ready", "receiver": "unreachable"}
        assert report["total_lag"] == 0 and report["dead_letters_total"] == 0
        assert report["group"]["state"] == "Stable" and len(report["group"]["members"]) == 1

        await worker.halt()
        await line.produce([lead(u, 1) for u in range(4)])
        halted = line.start_worker(braze_api_key="a-key-braze-refuses")
        halted_url = f"http://127.0.0.1:{halted.port}"
        await wait_for_readiness(halted_url, "not_ready")
        urls[1] = halted_url

        refused = await run_cli(capsys, "status", *kafka_options(line), *urls)
    assert refused.code == 1
    worker_line = next(line for line in refused.out.splitlines() if "worker " in line)
    assert "not_ready" in worker_line and "401" in worker_line
    assert "lag 4" in refused.out
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
