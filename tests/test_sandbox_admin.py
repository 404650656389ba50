"""The admin endpoints under `/_sandbox/`: stats, reset and faults, over HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from connector.config import load
from outgrow_braze_dev.sandbox.app import running
from outgrow_braze_dev.sandbox.client import SandboxClient
from outgrow_braze_dev.settings import SANDBOX_DEV_API_KEY, SandboxSettings

EVENT = {"external_id": "u1", "name": "quiz", "time": "2026-01-01T00:00:00Z"}


@pytest.fixture(scope="module")
async def braze() -> AsyncIterator[SandboxClient]:
    settings = load(
        SandboxSettings,
        {
            "sandbox_port": 0,
            "sandbox_api_key": SANDBOX_DEV_API_KEY,
            "sandbox_track_rate_limit": 5,
            "sandbox_track_rate_window_s": 3600,
            "sandbox_faults": '{"latency_ms": 1}',
        },
    )
    async with running(settings) as url, SandboxClient(url) as client:
        yield client


@pytest.fixture(autouse=True)
async def fresh(braze: SandboxClient) -> None:
    await braze.reset()


async def test_stats_count_requests_by_status_and_objects(braze: SandboxClient) -> None:
    await braze.track({"events": [EVENT, EVENT], "attributes": [{"a": 1}]})
    await braze.track({})
    await braze.track({}, api_key="wrong")
    stats = await braze.stats()
    assert stats["requests"] == {"/users/track": {"201": 1, "400": 1, "401": 1}}
    assert stats["objects_processed"] == {"attributes": 0, "events": 2, "purchases": 0}
    assert stats["objects_rejected"] == {"attributes": 1, "events": 0, "purchases": 0}
    assert stats["max_track_requests_in_3s"] == 3
    assert stats["profiles"] == 1


async def test_the_peak_counts_requests_sent_at_once(braze: SandboxClient) -> None:
    await asyncio.gather(*(braze.track({"events": [EVENT]}) for _ in range(8)))
    stats = await braze.stats()
    assert stats["max_track_requests_in_3s"] == 8
    assert stats["requests"]["/users/track"] == {"201": 5, "429": 3}


async def test_reset_forgets_profiles_counters_and_spent_budget(braze: SandboxClient) -> None:
    for _ in range(6):
        await braze.track({"events": [EVENT]})
    assert (await braze.track({"events": [EVENT]})).status == 429
    await braze.set_faults(error_rate=1.0)
    await braze.reset()
    stats = await braze.stats()
    assert (stats["requests"], stats["profiles"], stats["max_track_requests_in_3s"]) == ({}, 0, 0)
    assert (await braze.track({"events": [EVENT]})).status == 201
    faults = await braze.request("GET", "/_sandbox/faults")
    assert (faults.body["latency_ms"], faults.body["error_rate"]) == (1, 0)


async def test_admin_endpoints_need_no_key(braze: SandboxClient) -> None:
    for method, path in (("GET", "/_sandbox/stats"), ("GET", "/_sandbox/faults"), ("GET", "/")):
        assert (await braze.request(method, path)).status == 200
