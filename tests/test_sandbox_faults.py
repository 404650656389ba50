"""Faults: their settings, the per-request draw, and what a client sees when they are on."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from connector.config import load
from outgrow_braze_dev.sandbox.app import running
from outgrow_braze_dev.sandbox.client import SandboxClient
from outgrow_braze_dev.sandbox.faults import (
    CALM,
    Faults,
    FaultSettings,
    InvalidFaults,
    parse_faults,
)
from outgrow_braze_dev.settings import SANDBOX_DEV_API_KEY, SandboxSettings

BODY = {"attributes": [{"external_id": "u1", "a": 1}]}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


# --------------------------------------------------------------------------- settings


def test_parse_faults_merges_over_a_base() -> None:
    base = FaultSettings(latency_ms=5)
    parsed = parse_faults({"error_rate": 0.5, "error_statuses": [503]}, base)
    assert parsed == FaultSettings(latency_ms=5, error_rate=0.5, error_statuses=(503,))
    assert parse_faults({}) == FaultSettings()


@pytest.mark.parametrize(
    "document",
    [
        [],
        {"teapot": 1},
        {"error_rate": 1.5},
        {"drop_rate": -0.1},
        {"latency_ms": "10"},
        {"latency_ms": True},
        {"storm_s": -1},
        {"error_statuses": [500, 418]},
        {"error_statuses": []},
    ],
)
def test_parse_faults_refuses_nonsense(document: Any) -> None:
    with pytest.raises(InvalidFaults):
        parse_faults(document)


def test_no_fault_is_calm() -> None:
    assert Faults().decide() is CALM


def test_latency_and_jitter_delay_every_request() -> None:
    faults = Faults(FaultSettings(latency_ms=100, jitter_ms=50), rng=random.Random(1))
    delays = [faults.decide().delay_s for _ in range(50)]
    assert all(0.1 <= delay <= 0.15 for delay in delays)
    assert len(set(delays)) > 1


def test_error_rate_picks_the_configured_statuses() -> None:
    faults = Faults(FaultSettings(error_rate=0.5, error_statuses=(502, 504)), rng=random.Random(7))
    drawn = [faults.decide() for _ in range(400)]
    errors = [d.status for d in drawn if d.action == "error"]
    assert 120 < len(errors) < 280
    assert set(errors) == {502, 504}


def test_storm_and_outage_last_their_seconds_from_when_set() -> None:
    clock = FakeClock()
    faults = Faults(clock=clock)
    faults.configure({"storm_s": 10})
    decision = faults.decide()
    assert (decision.action, decision.status, decision.until_s) == ("storm", 429, 10)
    clock.now += 4
    faults.configure({"outage_s": 2})  # the storm keeps its own deadline
    assert faults.decide().action == "outage"
    clock.now += 3
    assert faults.describe()["storm_left_s"] == 3
    assert faults.decide().action == "storm"
    clock.now += 3
    assert faults.decide() is CALM


def test_reset_restores_the_start_up_faults_and_clear_removes_them() -> None:
    clock = FakeClock()
    faults = Faults(FaultSettings(drop_rate=1.0, outage_s=5), clock=clock)
    assert faults.decide().action == "outage"
    faults.clear()
    assert faults.decide() is CALM
    faults.reset()
    assert faults.decide().action == "outage"
    clock.now += 6
    assert faults.decide().action == "drop"


# --------------------------------------------------------------------------- over HTTP


@pytest.fixture(scope="module")
async def braze() -> AsyncIterator[SandboxClient]:
    settings = load(
        SandboxSettings,
        {"sandbox_port": 0, "sandbox_api_key": SANDBOX_DEV_API_KEY, "sandbox_faults": ""},
    )
    async with running(settings) as url, SandboxClient(url) as client:
        yield client


@pytest.fixture(autouse=True)
async def fresh(braze: SandboxClient) -> None:
    await braze.reset()


async def test_a_5xx_fraction_answers_braze_style_errors(braze: SandboxClient) -> None:
    """https://www.braze.com/docs/api/errors: 500, 502, 503 and 504 are to be retried."""
    await braze.set_faults(error_rate=1.0, error_statuses=[502])
    answer = await braze.track(BODY)
    assert (answer.status, answer.body) == (502, {"message": "Bad Gateway"})
    assert "X-RateLimit-Remaining" in answer.headers
    await braze.clear_faults()
    assert (await braze.track(BODY)).status == 201
    stats = await braze.stats()
    assert stats["requests"]["/users/track"] == {"502": 1, "201": 1}
    assert stats["objects_processed"]["attributes"] == 1


async def test_a_429_storm_lasts_its_seconds(braze: SandboxClient) -> None:
    """https://www.braze.com/docs/api/api_limits: 429 with Remaining 0 and the reset time."""
    await braze.set_faults(storm_s=0.3)
    answer = await braze.track(BODY)
    assert answer.status == 429
    assert answer.headers["X-RateLimit-Remaining"] == "0"
    assert int(answer.headers["X-RateLimit-Reset"]) >= time.time()
    await asyncio.sleep(0.35)
    assert (await braze.track(BODY)).status == 201


async def test_an_outage_answers_503_to_every_braze_request(braze: SandboxClient) -> None:
    await braze.set_faults(outage_s=30)
    assert (await braze.track(BODY)).status == 503
    query = {"external_ids": ["u1"], "fields_to_export": ["external_id"]}
    assert (await braze.export_ids(query)).status == 503
    assert (await braze.stats())["profiles"] == 0  # admin endpoints stay up
    described = await braze.clear_faults()
    assert described["outage_left_s"] == 0
    assert (await braze.track(BODY)).status == 201


async def test_dropped_connections_give_no_answer(braze: SandboxClient) -> None:
    await braze.set_faults(drop_rate=1.0)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await braze.track(BODY)
    await braze.clear_faults()
    assert (await braze.stats())["requests"]["/users/track"] == {"dropped": 1}


async def test_latency_and_a_slow_body_delay_the_answer(braze: SandboxClient) -> None:
    await braze.set_faults(latency_ms=100, slow_body_ms=150)
    started = time.perf_counter()
    answer = await braze.track(BODY)
    assert answer.status == 201
    assert answer.body["attributes_processed"] == 1
    assert time.perf_counter() - started >= 0.25


async def test_faults_can_be_read_and_bad_ones_are_refused(braze: SandboxClient) -> None:
    current = await braze.set_faults(jitter_ms=5)
    assert current["jitter_ms"] == 5
    assert (await braze.request("GET", "/_sandbox/faults")).body == current
    for body in (b"{", b'{"error_rate": 3}', b'{"nope": 1}'):
        answer = await braze.request("POST", "/_sandbox/faults", body)
        assert answer.status == 400
        assert answer.body["message"]
