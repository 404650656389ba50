"""The worker against a real broker and the Braze sandbox over HTTP."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import orjson
import pytest
from aiohttp import ClientConnectorError, ClientSession

from connector.worker import PARTITION_FETCH_BYTES, WorkerConfig, serve
from outgrow_braze_dev.sandbox.app import Sandbox
from outgrow_braze_dev.sandbox.state import SandboxConfig
from tests.kafka_support import end_offsets
from tests.test_receiver import running_receiver
from tests.worker_support import lead, pipeline, sandbox_settings, wait_for


async def test_submissions_through_the_receiver_end_in_each_users_last_state(
    bootstrap_servers: str,
) -> None:
    users, rounds = 200, 25
    async with pipeline(bootstrap_servers, partitions=6) as line:
        async with running_receiver(bootstrap_servers, topics=line.topics) as rx:
            for round_ in range(rounds):
                posts = [rx.post(orjson.dumps(lead(u, round_))) for u in range(users)]
                assert {status for status, _ in await asyncio.gather(*posts)} == {202}
        line.start_worker()
        await line.all_committed(timeout_s=120)

        for user in range(users):
            profile = line.profile(user)
            assert profile is not None, f"user-{user} never arrived"
            assert profile.custom["outgrow_quiz_score"] == (rounds - 1) * 1000 + user
            assert profile.custom["outgrow_custom_segment"] == f"segment-{rounds - 1}"
            assert profile.events["outgrow_submission"].count == rounds
        assert await line.dead_letters() == []
        stats = line.sandbox.state.stats.snapshot()
        assert stats["objects_processed"]["events"] == users * rounds


async def test_a_lead_larger_than_a_partition_fetch_arrives_with_the_rest(
    bootstrap_servers: str,
) -> None:
    """A fetch takes at most PARTITION_FETCH_BYTES of a partition, yet Kafka hands over a
    larger first record whole: a big lead is delivered, not stuck."""
    big = lead(7, 0, notes="x" * (PARTITION_FETCH_BYTES * 3))
    documents = [*(lead(u, 0) for u in range(7)), big, *(lead(u, 0) for u in range(8, 20))]
    async with pipeline(bootstrap_servers, partitions=1) as line:
        await line.produce(documents)
        line.start_worker()
        await line.all_committed()
        assert all(line.profile(u) is not None for u in range(20))


async def test_refused_objects_are_dead_lettered_and_the_rest_arrive(
    bootstrap_servers: str,
) -> None:
    good = [lead(u, 0) for u in range(150)]
    bad_email = {**lead(900, 0, external_id=None), "user_info": {"email": "not-an-email"}}
    del bad_email["external_id"]
    long_id = lead(901, 0, external_id="x" * 1000)
    documents = [*good[:70], bad_email, *good[70:], long_id]
    async with pipeline(bootstrap_servers) as line:
        await line.produce(documents)
        line.start_worker()
        await line.all_committed()
        letters = await line.dead_letters()

    assert all(line.profile(u) is not None for u in range(150))
    assert sorted(orjson.loads(r.value)["id"] for r in letters) == ["lead-900-0", "lead-901-0"]
    for record in letters:
        headers = {k: v.decode() for k, v in record.headers}
        assert headers["dlq-stage"] == "braze"
        assert headers["dlq-reason"]
        assert headers["dlq-original-topic"] == line.topics.raw
        assert int(headers["dlq-original-offset"]) >= 0
        assert headers["dlq-mapping-version"]
        assert headers["content-type"] == "application/json"


async def test_unmappable_records_are_dead_lettered_with_the_map_stage(
    bootstrap_servers: str,
) -> None:
    async with pipeline(bootstrap_servers) as line:
        await line.produce([{"id": "anonymous", "results": []}, lead(1, 0)])
        line.start_worker()
        await line.all_committed()
        letters = await line.dead_letters()
    assert [orjson.loads(r.value)["id"] for r in letters] == ["anonymous"]
    assert dict(letters[0].headers)["dlq-stage"] in (b"map", b"parse")
    assert line.profile(1) is not None


async def test_a_dead_letter_kafka_will_not_take_does_not_hold_up_a_stop(
    bootstrap_servers: str,
) -> None:
    """The dead-letter topic is missing (auto-creation is off): the unmappable record's dead
    letter retries without end, yet the worker stops within its grace period and commits
    nothing past that record, so the next worker reads it again."""
    async with pipeline(bootstrap_servers, partitions=1) as line:
        await line.produce([{"id": "anonymous", "results": []}])
        await line.produce([lead(1, 0)])
        settings = line.worker_settings(worker_drain_timeout_s=1)
        topics = line.topics.topics.model_copy(update={"dlq_topic": f"missing-{uuid.uuid4().hex}"})
        stop = asyncio.Event()
        task = asyncio.create_task(serve(WorkerConfig(line.topics.kafka, topics, settings), stop))
        letter = 'outgrow_worker_records_dead_lettered_total{stage="map"}'
        async with asyncio.timeout(60):  # the worker took the record and is retrying its letter
            while (await _metrics_when_up(settings.worker_port)).get(letter, 0) < 1:
                await asyncio.sleep(0.2)
        await asyncio.sleep(1)
        assert not task.done()
        stop.set()
        await asyncio.wait_for(task, timeout=30)
        assert await line.committed() == {0: 0}


async def test_a_dead_letter_kafka_will_not_take_does_not_hold_back_what_is_mapped(
    bootstrap_servers: str,
) -> None:
    """While the unmappable record's dead letter waits on a missing dead-letter topic, the lead
    mapped before it in the same batch still goes to Braze; the stop commits it, and nothing
    past the unmappable record."""
    async with pipeline(bootstrap_servers, partitions=1) as line:
        await line.produce([lead(1, 0)])
        await line.produce([{"id": "anonymous", "results": []}])
        settings = line.worker_settings(worker_drain_timeout_s=1)
        topics = line.topics.topics.model_copy(update={"dlq_topic": f"missing-{uuid.uuid4().hex}"})
        stop = asyncio.Event()
        task = asyncio.create_task(serve(WorkerConfig(line.topics.kafka, topics, settings), stop))
        try:
            await wait_for(lambda: line.profile(1) is not None, timeout_s=30)
            assert not task.done()
        finally:
            stop.set()
            await asyncio.wait_for(task, timeout=30)
        assert await line.committed() == {0: 1}


RATE = "outgrow_worker_rate_limit_per_second"
BUDGET = "outgrow_worker_rate_budget_per_second"


async def _metrics(port: int) -> dict[str, float]:
    """The worker's samples, `name{labels}` -> value, read from /metrics (not /readyz)."""
    async with ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
            text = await response.text()
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    samples = (line.rsplit(" ", 1) for line in lines)
    return {name: float(value) for name, value in samples}


async def _metrics_when_up(port: int) -> dict[str, float]:
    """The worker's samples, or none while its health server is not listening yet."""
    try:
        return await _metrics(port)
    except ClientConnectorError:
        return {}


def _lag_partitions(samples: dict[str, float]) -> set[str]:
    return {name for name in samples if name.startswith("outgrow_worker_consumer_lag{")}


async def _ready_status(port: int) -> tuple[int, Any]:
    async with ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}/readyz") as response:
            return response.status, await response.json()


async def test_a_refused_key_halts_then_resumes_when_braze_accepts_it(
    bootstrap_servers: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with pipeline(bootstrap_servers) as line:
        await line.produce([lead(u, 0) for u in range(40)])
        worker = line.start_worker(braze_api_key="a-key-braze-does-not-know")
        await wait_for(lambda: line.sandbox.state.stats.snapshot()["requests"] != {}, 30)
        await asyncio.sleep(1.5)
        # The gauges say so before anyone asks /readyz.
        samples = await _metrics(worker.port)
        assert (samples["outgrow_worker_halted"], samples["outgrow_worker_ready"]) == (1, 0)
        status, body = await _ready_status(worker.port)
        assert status == 503 and "401" in body["reason"]
        assert set((await line.committed()).values()) == {0}
        assert await line.dead_letters() == []
        assert len(line.sandbox.state.store) == 0
        refusals = [r for r in caplog.records if "refuses the configuration" in r.getMessage()]
        assert len(refusals) == 1, "one clear line, not one per retry"
        assert "a-key-braze-does-not-know" not in caplog.text

        # Braze now knows the key: restart the sandbox on its port with the key added.
        port = int(line.sandbox.base_url.rsplit(":", 1)[1])
        await line.sandbox.stop()
        fixed = sandbox_settings(
            sandbox_port=port, sandbox_extra_keys="a-key-braze-does-not-know:users.track"
        )
        async with Sandbox(SandboxConfig.from_settings(fixed)) as sandbox:
            line.sandbox = sandbox
            await line.all_committed()
            assert all(sandbox.state.store.by_external_id(f"user-{u}") for u in range(40))
            assert (await _metrics(worker.port))["outgrow_worker_ready"] == 1
            status, _ = await _ready_status(worker.port)
            assert status == 200
        assert await line.dead_letters() == []


async def test_throttling_and_server_errors_lose_nothing_and_respect_the_budget(
    bootstrap_servers: str,
) -> None:
    budget = 60
    async with pipeline(
        bootstrap_servers, sandbox_track_rate_limit=budget, sandbox_track_rate_window_s=3.0
    ) as line:
        await line.produce([lead(u, r) for r in range(4) for u in range(600)])
        async with ClientSession() as session:
            faults = {"error_rate": 0.1, "storm_s": 2.0}
            async with session.post(f"{line.sandbox.base_url}/_sandbox/faults", json=faults) as r:
                assert r.status == 200
        line.start_worker(
            braze_rate_limit=f"{budget}/3s", braze_max_objects=20, worker_batch_window_ms=5
        )
        await line.all_committed(timeout_s=180)
        stats = line.sandbox.state.stats.snapshot()
        assert await line.dead_letters() == []
    assert all(line.profile(u).custom["outgrow_quiz_score"] == 3000 + u for u in range(600))
    assert stats["max_track_requests_in_3s"] <= budget
    statuses = stats["requests"]["/users/track"]
    assert any(str(code).startswith("5") for code in statuses), statuses
    assert "429" in {str(code) for code in statuses}, statuses


async def test_two_workers_share_partitions_and_budget_and_lose_nothing(
    bootstrap_servers: str,
) -> None:
    slow = {"braze_rate_limit": "60/3s", "worker_batch_window_ms": 5, "braze_max_objects": 10}
    async with pipeline(bootstrap_servers, partitions=4) as line:
        await line.produce([lead(u, r) for r in range(3) for u in range(400)])
        line.start_worker(**slow)
        await wait_for(lambda: len(line.sandbox.state.store) > 20, 60)
        line.start_worker(**slow)

        async def rates() -> list[tuple[float, float]]:
            """Each worker's allowed rate now and its budget."""
            samples = [await _metrics(worker.port) for worker in line.workers]
            return [(s[RATE], s[BUDGET]) for s in samples]

        async with asyncio.timeout(60):
            # 60 per 3 s, two partitions of four each: allowed now and budget alike
            while await rates() != [(10.0, 10.0), (10.0, 10.0)]:
                await asyncio.sleep(0.3)
        assert len(line.sandbox.state.store) < 400, "the rebalance came after the work"
        # The first worker no longer reports the partitions it gave away.
        first, second = [_lag_partitions(await _metrics(w.port)) for w in line.workers]
        assert len(first) <= 2 and len(second) <= 2 and not first & second, (first, second)
        await line.produce([lead(u, 3) for u in range(400)])
        await line.all_committed(timeout_s=180)
        ends = await end_offsets(line.bootstrap, line.topics.raw)
        assert sum(ends.values()) == 1600
    for user in range(400):
        profile = line.profile(user)
        assert profile.custom["outgrow_quiz_score"] == 3000 + user
        assert profile.events["outgrow_submission"].count >= 4


async def test_a_request_refused_whole_is_split_down_to_the_bad_objects(
    bootstrap_servers: str,
) -> None:
    """Braze answers 400 when no object of a request is valid; splitting isolates them."""
    bad = [
        {"id": f"bad-{n}", "user_info": {"email": f"broken-address-{n}"}, "results": []}
        for n in range(3)
    ]
    async with pipeline(bootstrap_servers, partitions=1) as line:
        await line.produce(bad)
        await line.produce([lead(u, 0) for u in range(5)])
        line.start_worker(braze_max_objects=6, worker_batch_window_ms=200)
        await line.all_committed()
        letters = await line.dead_letters()
        statuses = line.sandbox.state.stats.snapshot()["requests"]["/users/track"]
    assert sorted(orjson.loads(r.value)["id"] for r in letters) == ["bad-0", "bad-1", "bad-2"]
    assert {dict(r.headers)["dlq-braze-status"] for r in letters} <= {b"400", b"201"}
    assert "400" in {str(code) for code in statuses}, statuses
    assert all(line.profile(u) is not None for u in range(5))


async def test_an_outage_longer_than_the_setting_warns_flips_readiness_and_recovers(
    bootstrap_servers: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The sandbox answers 503 to everything for 5 s; past WORKER_OUTAGE_WARN_S (1 s here) the
    worker warns with what waits, is not ready, then ready again once Braze answers."""
    async with pipeline(bootstrap_servers, partitions=1) as line:
        async with ClientSession() as session:
            url = f"{line.sandbox.base_url}/_sandbox/faults"
            async with session.post(url, json={"outage_s": 5.0}) as r:
                assert r.status == 200
        await line.produce([lead(u, 0) for u in range(20)])
        worker = line.start_worker(worker_outage_warn_s=1, worker_retry_max_backoff_s=1)
        async with asyncio.timeout(30):
            while (ready := await _ready_when_up(worker.port))[0] != 503:
                await asyncio.sleep(0.2)
        assert "no answer" in ready[1]["reason"]
        assert (await _metrics(worker.port))["outgrow_worker_braze_outage"] == 1
        await line.all_committed()
        assert (await _ready_status(worker.port))[0] == 200
        assert (await _metrics(worker.port))["outgrow_worker_braze_outage"] == 0
        assert all(line.profile(u) is not None for u in range(20))
    warnings = [r for r in caplog.records if "braze has given no answer" in r.getMessage()]
    assert len(warnings) == 1, "one line a minute, and the outage lasted seconds"
    assert warnings[0].requests_waiting >= 1  # type: ignore[attr-defined]
    recoveries = [r for r in caplog.records if "braze answers again" in r.getMessage()]
    assert len(recoveries) == 1


async def _ready_when_up(port: int) -> tuple[int, Any]:
    """The /readyz answer, or (0, None) while the health server is not listening yet."""
    try:
        return await _ready_status(port)
    except ClientConnectorError:
        return 0, None
