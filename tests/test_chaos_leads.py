"""The fault test's lead stream: posted like webhooks, retried until acknowledged."""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import AsyncIterator

import orjson
import pytest
from aiohttp import web

from outgrow_braze_dev.chaos_leads import LeadStream
from outgrow_braze_dev.loadgen import NotLoopback

USER, PASSWORD = "chaos", "secret-password"


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[str, Counter[str]]]:
    """A stand-in receiver: 503 to each lead's first post, 202 to its second."""
    seen: Counter[str] = Counter()
    expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()

    async def post(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != expected:
            return web.Response(status=401)
        lead_id = orjson.loads(await request.read())["id"]
        seen[lead_id] += 1
        return web.Response(status=503 if seen[lead_id] == 1 else 202)

    app = web.Application()
    app.router.add_post("/webhooks/outgrow", post)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/webhooks/outgrow", seen
    finally:
        await runner.cleanup()


async def test_each_lead_is_posted_until_acknowledged(
    receiver: tuple[str, Counter[str]],
) -> None:
    url, seen = receiver
    stream = LeadStream(url, USER, PASSWORD, leads=20, users=5, rate_per_s=400.0)
    posted = await stream.post_all()
    assert len(posted.acknowledged) == 20
    assert set(seen) == posted.acknowledged
    assert all(count == 2 for count in seen.values())
    assert posted.posts == 40
    assert posted.refusals == Counter({"503": 20})
    assert posted.abandoned == set()


async def test_a_lead_never_acknowledged_is_given_up_not_counted(
    receiver: tuple[str, Counter[str]],
) -> None:
    url, _ = receiver
    stream = LeadStream(url, USER, "wrong", leads=3, users=3, rate_per_s=300.0, give_up_s=0.2)
    posted = await stream.post_all()
    assert posted.acknowledged == set()
    assert len(posted.abandoned) == 3
    assert posted.refusals["401"] >= 3


async def test_a_closed_port_is_a_refusal_too() -> None:
    stream = LeadStream(
        "http://127.0.0.1:9/webhooks/outgrow", USER, PASSWORD, 1, 1, 10.0, give_up_s=0.1
    )
    posted = await stream.post_all()
    assert len(posted.abandoned) == 1
    assert posted.refusals["ClientConnectorError"] >= 1


def test_only_this_machine_is_ever_posted_to() -> None:
    with pytest.raises(NotLoopback):
        LeadStream("http://example.com/webhooks/outgrow", USER, PASSWORD, 1, 1, 1.0)
