"""The sandbox's lifecycle (in-process, `serve`, the `outgrow-braze sandbox` command) and its
robustness: no input, however broken, gets a 500 unless a 5xx fault is configured."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector.config import load
from outgrow_braze_dev.sandbox.app import Sandbox, _base_url, running, serve
from outgrow_braze_dev.sandbox.client import SandboxClient
from outgrow_braze_dev.sandbox.state import SandboxConfig
from outgrow_braze_dev.settings import SANDBOX_DEV_API_KEY, SandboxSettings


def sandbox_settings(**overrides: Any) -> SandboxSettings:
    values = {"sandbox_host": "127.0.0.1", "sandbox_port": 0, "sandbox_faults": ""}
    return load(SandboxSettings, {**values, "sandbox_api_key": SANDBOX_DEV_API_KEY, **overrides})


@pytest.fixture(scope="module")
async def braze() -> AsyncIterator[SandboxClient]:
    async with running(sandbox_settings()) as url, SandboxClient(url) as client:
        yield client


def _port_open(url: str) -> bool:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, int(port))) == 0


async def test_running_yields_the_base_url_and_stops_on_exit() -> None:
    async with running(sandbox_settings()) as url:
        assert url.startswith("http://127.0.0.1:")
        assert _port_open(url)
        async with SandboxClient(url) as client:
            assert (await client.stats())["profiles"] == 0
    assert not _port_open(url)


async def test_serve_announces_the_url_and_returns_when_stop_is_set() -> None:
    stop = asyncio.Event()
    announced: list[str] = []
    task = asyncio.create_task(serve(sandbox_settings(), stop, ready=announced.append))
    for _ in range(100):
        if announced:
            break
        await asyncio.sleep(0.02)
    [url] = announced
    async with SandboxClient(url) as client:
        answer = await client.track({"attributes": [{"external_id": "u1", "a": 1}]})
        assert answer.status == 201
    stop.set()
    await asyncio.wait_for(task, 5)
    assert not _port_open(url)


async def test_a_busy_port_fails_start_and_leaves_nothing_running() -> None:
    async with running(sandbox_settings()) as url:
        port = int(url.rsplit(":", 1)[1])
        sandbox = Sandbox(SandboxConfig.from_settings(sandbox_settings(sandbox_port=port)))
        with pytest.raises(OSError):
            await sandbox.start()
        await sandbox.stop()


def test_wildcard_hosts_are_announced_as_loopback() -> None:
    assert _base_url("0.0.0.0", 9090) == "http://127.0.0.1:9090"
    assert _base_url("::1", 9090) == "http://[::1]:9090"
    assert _base_url("localhost", 1) == "http://localhost:1"


async def test_a_known_path_with_another_method_gets_405_and_others_404(
    braze: SandboxClient,
) -> None:
    assert (await braze.request("GET", "/users/track")).status == 405
    assert (await braze.request("PUT", "/_sandbox/reset")).status == 405
    answer = await braze.request("GET", "/nowhere")
    assert (answer.status, answer.body) == (404, {"message": "Not Found"})


# --------------------------------------------------------------------------- the command


async def _command(*args: str, env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "connector",
        *args,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def test_the_command_prints_its_url_first_and_stops_on_sigterm() -> None:
    env = {"SANDBOX_PORT": "0", "SANDBOX_HOST": "127.0.0.1", "SANDBOX_API_KEY": "cli-key"}
    process = await _command("sandbox", env=env)
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 20)
        url = line.decode().strip()
        assert url.startswith("http://127.0.0.1:")
        async with SandboxClient(url, api_key="cli-key") as client:
            answer = await client.track({"events": [_event()]})
            assert answer.status == 201
        process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), 10)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0
    assert b"cli-key" not in stderr


def _event() -> dict[str, Any]:
    return {"external_id": "u1", "name": "quiz", "time": "2026-01-01T00:00:00Z"}


async def test_the_command_refuses_bad_settings_with_exit_code_2() -> None:
    process = await _command("sandbox", env={"SANDBOX_PORT": "0", "SANDBOX_EXTRA_KEYS": "oops"})
    stdout, stderr = await asyncio.wait_for(process.communicate(), 20)
    assert process.returncode == 2
    assert stdout == b""
    assert "SANDBOX_EXTRA_KEYS" in stderr.decode()


# --------------------------------------------------------------------------- never a 500

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=300),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
ID_KEYS = ["external_id", "user_alias", "braze_id", "email", "phone", "_update_existing_only"]
FIELD_KEYS = ["name", "time", "properties", "product_id", "currency", "price", "quantity"]
FIELD_KEYS += ["_merge_objects", "email_subscribe", "gender", "dob", "app_id", "tags", "quiz"]
object_keys = st.sampled_from(ID_KEYS + FIELD_KEYS) | st.text(max_size=8)
track_like = st.dictionaries(
    st.sampled_from(["attributes", "events", "purchases", "partner"]),
    st.lists(st.dictionaries(object_keys, json_values, max_size=6), max_size=4) | json_values,
    max_size=3,
)


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=st.binary(max_size=200) | json_values.map(orjson.dumps) | track_like.map(orjson.dumps))
async def test_no_track_body_gets_a_server_error(braze: SandboxClient, body: bytes) -> None:
    answer = await braze.request("POST", "/users/track", body, braze.headers())
    assert answer.status in {201, 400}, (answer.status, answer.body)
    assert isinstance(answer.body, dict) and isinstance(answer.body.get("message"), str)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=json_values.map(orjson.dumps) | st.binary(max_size=100))
async def test_no_export_body_gets_a_server_error(braze: SandboxClient, body: bytes) -> None:
    answer = await braze.request("POST", "/users/export/ids", body, braze.headers())
    assert answer.status in {201, 400}, (answer.status, answer.body)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    authorization=st.text(max_size=40),
    content_type=st.text(max_size=30),
    path=st.sampled_from(["/users/track", "/users/export/ids", "/_sandbox/faults"]),
)
async def test_no_header_gets_a_server_error(
    braze: SandboxClient, authorization: str, content_type: str, path: str
) -> None:
    headers = {"Authorization": authorization, "Content-Type": content_type}
    try:
        answer = await braze.request("POST", path, b"{}", headers)
    except ValueError:  # the client itself refuses headers with line breaks
        return
    assert answer.status < 500, (answer.status, answer.body)
