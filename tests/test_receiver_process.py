"""The receiver as operators run it: a process with signals, logs and a command line."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest
from aiohttp import ClientError, ClientSession

from tests.kafka_support import fresh_topics, read_all

TOKEN = "process-token-0123456789abcdef"
PASSWORD = "process-password-42"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Process:
    proc: asyncio.subprocess.Process
    base: str
    raw_topic: str


def _env(bootstrap: str, port: int, raw: str, dlq: str) -> dict[str, str]:
    return {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "RAW_TOPIC": raw,
        "DLQ_TOPIC": dlq,
        "RECEIVER_HOST": "127.0.0.1",
        "RECEIVER_PORT": str(port),
        "WEBHOOK_TOKENS": TOKEN,
        "WEBHOOK_BASIC_AUTH": f"outgrow:{PASSWORD}",
        "RECEIVER_SHUTDOWN_DELAY_S": "1",
        "LOG_LEVEL": "INFO",
    }


async def wait_ready(session: ClientSession, base: str, timeout_s: float = 30) -> None:
    async with asyncio.timeout(timeout_s):
        while True:
            try:
                async with session.get(base + "/readyz") as response:
                    if response.status == 200:
                        return
            except ClientError:
                pass
            await asyncio.sleep(0.2)


@asynccontextmanager
async def receiver_process(bootstrap: str) -> AsyncIterator[Process]:
    topics = await fresh_topics(bootstrap)
    port = free_port()
    env = _env(bootstrap, port, topics.raw, topics.topics.dlq_topic)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "connector",
        "receiver",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        yield Process(proc, f"http://127.0.0.1:{port}", topics.raw)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_sigterm_drains_flushes_and_exits_zero(bootstrap_servers: str) -> None:
    async with receiver_process(bootstrap_servers) as rx, ClientSession() as session:
        await wait_ready(session, rx.base)
        url = f"{rx.base}/webhooks/outgrow?token={TOKEN}"
        body = (
            b'{"id": "sig-1", "user_info": '
            b'{"email": "Secret.Person@example.com", "phone": "+1 555 0100"}}'
        )
        posts = [
            session.post(url, data=body, headers={"Content-Type": "application/json"})
            for _ in range(20)
        ]
        responses = await asyncio.gather(*posts)
        assert [r.status for r in responses] == [202] * 20
        rx.proc.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.3)
        async with session.get(rx.base + "/readyz") as ready:
            assert ready.status == 503  # still serving, but no longer ready
        _, stderr = await asyncio.wait_for(rx.proc.communicate(), timeout=30)
        assert rx.proc.returncode == 0
    records = await read_all(bootstrap_servers, rx.raw_topic)
    assert len(records) == 20
    logs = stderr.decode()
    assert "receiver stopped" in logs
    for secret in (TOKEN, PASSWORD, "Secret.Person@example.com", "secret.person@example.com"):
        assert secret not in logs


async def test_receiver_refuses_to_start_without_credentials() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEBHOOK_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "connector",
        "receiver",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode == 2
    assert b"no webhook credentials" in stderr
    assert b"--receiver-insecure-no-auth" in stderr


async def test_help_names_every_environment_variable() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "connector",
        "receiver",
        "--help",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, _ = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode == 0
    text = stdout.decode()
    for name in (
        "KAFKA_BOOTSTRAP_SERVERS",
        "RAW_TOPIC",
        "DLQ_TOPIC",
        "RECEIVER_PORT",
        "WEBHOOK_BASIC_AUTH",
        "WEBHOOK_TOKENS",
        "--receiver-port",
    ):
        assert name in text


@pytest.mark.parametrize("value", ["not-a-number", "-5"])
async def test_invalid_setting_exits_two_naming_it(value: str) -> None:
    env = {**os.environ, "RECEIVER_PORT": value, "WEBHOOK_TOKENS": TOKEN}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "connector",
        "receiver",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode == 2
    assert b"RECEIVER_PORT" in stderr
