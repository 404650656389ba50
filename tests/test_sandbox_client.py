"""The sandbox client: sessions, keys and admin calls."""

from __future__ import annotations

import aiohttp
import pytest

from connector.config import load
from outgrow_braze_dev.sandbox.app import running
from outgrow_braze_dev.sandbox.client import SandboxClient
from outgrow_braze_dev.settings import SANDBOX_DEV_API_KEY, SandboxSettings


def test_headers_carry_the_key_and_json() -> None:
    client = SandboxClient("http://127.0.0.1:1/", api_key="k")
    assert client.base_url == "http://127.0.0.1:1"
    assert client.headers() == {"Authorization": "Bearer k", "Content-Type": "application/json"}
    assert client.headers("other")["Authorization"] == "Bearer other"
    with pytest.raises(RuntimeError, match="async with"):
        _ = client.session


async def test_a_given_session_is_used_and_left_open() -> None:
    settings = load(SandboxSettings, {"sandbox_port": 0, "sandbox_api_key": SANDBOX_DEV_API_KEY})
    async with running(settings) as url, aiohttp.ClientSession() as session:
        async with SandboxClient(url, session=session) as client:
            answer = await client.track(
                {"events": [{"braze_id": "x", "name": "e", "time": "2026-01-01"}]}
            )
            assert answer.status == 201
        assert not session.closed
        async with SandboxClient(url) as owned:
            await owned.reset()
            with pytest.raises(RuntimeError, match="answered 404"):
                await owned._admin("GET", "/_sandbox/nothing")
            plain = await owned.request("GET", "/")
            assert plain.body is None
        assert owned._session is None
