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
from pathlib import Path

import orjson
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
async def receiver_process(bootstrap: str, **settings: str) -> AsyncIterator[Process]:
    topics = await fresh_topics(bootstrap)
    port = free_port()
    env = {**_env(bootstrap, port, topics.raw, topics.topics.dlq_topic), **settings}
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


async def _receiver_exit(env: dict[str, str]) -> tuple[int | None, bytes]:
    """Run a receiver that is expected to exit at start-up; its exit code and stderr."""
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
    return proc.returncode, stderr


async def test_receiver_refuses_to_start_without_credentials() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEBHOOK_")}
    code, stderr = await _receiver_exit(env)
    assert code == 2
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
    code, stderr = await _receiver_exit(env)
    assert code == 2
    assert b"RECEIVER_PORT" in stderr


async def test_a_bad_mapping_file_exits_two_before_connecting(tmp_path: Path) -> None:
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text("version: 1\nidentity:\n  - email: a..b\n", encoding="utf-8")
    env = {**os.environ, "WEBHOOK_TOKENS": TOKEN, "MAPPING_FILE": str(mapping)}
    env["KAFKA_BOOTSTRAP_SERVERS"] = f"127.0.0.1:{free_port()}"  # nobody there: not reached
    code, stderr = await _receiver_exit(env)
    assert code == 2
    assert stderr.decode() == (
        f"outgrow-braze: {mapping}:3: identity[0].email: bad path 'a..b': "
        "a key is missing (at character 3)\n"
    )


async def test_records_are_keyed_by_the_mapping_file_and_retired_settings_warn_once(
    bootstrap_servers: str, tmp_path: Path
) -> None:
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(
        "version: 1\nlead_id_from: ref\nidentity:\n  - external_id: crm.id\n",
        encoding="utf-8",
    )
    retired = {"RECORD_KEY_PATHS": "email", "RECORD_LEAD_ID_PATHS": "id"}
    async with (
        receiver_process(bootstrap_servers, MAPPING_FILE=str(mapping), **retired) as rx,
        ClientSession() as session,
    ):
        await wait_ready(session, rx.base)
        url = f"{rx.base}/webhooks/outgrow?token={TOKEN}"
        for body in (b'{"crm": {"id": "C-1"}, "email": "a@b.co"}', b'{"ref": "R-2", "id": 3}'):
            async with session.post(
                url, data=body, headers={"Content-Type": "application/json"}
            ) as response:
                assert response.status == 202
        rx.proc.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(rx.proc.communicate(), timeout=30)
        assert rx.proc.returncode == 0
    records = await read_all(bootstrap_servers, rx.raw_topic)
    assert sorted(record.key for record in records) == [b"external_id:C-1", b"lead:R-2"]
    warnings = [line for line in stderr.decode().splitlines() if "no longer read" in line]
    assert len(warnings) == 1
    assert "RECORD_KEY_PATHS" in warnings[0] and "RECORD_LEAD_ID_PATHS" in warnings[0]
    assert "MAPPING_FILE" in warnings[0]


# The manifests' memory limit of a receiver container (deploy/kubernetes/base/receiver.yaml).
MEMORY_LIMIT_BYTES = 1024 * 1024 * 1024
MIB = 1024 * 1024


def peak_rss_bytes(pid: int) -> int:
    """The process's peak resident set size so far (VmHWM), from /proc."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc status")


def post_head(port: int, length: int) -> bytes:
    return (
        f"POST /webhooks/outgrow?token={TOKEN} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


async def read_answer(reader: asyncio.StreamReader) -> Answer:
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines if line)
    body = await reader.readexactly(int(headers.get("Content-Length", "0")))
    return Answer(int(status_line.split()[1]), headers, body)


def big_lead(n: int) -> bytes:
    """A lead padded with white space to exactly 1 MiB, the largest body accepted."""
    return orjson.dumps({"id": f"big-{n}", "user_info": {"email": f"big{n}@example.com"}}).ljust(
        MIB
    )


async def test_posts_beyond_the_byte_budget_are_shed_and_memory_stays_bounded(
    bootstrap_servers: str,
) -> None:
    """Eight hundred 1 MiB posts at once, as a new user tried: the receiver once reached 1.75 GB.

    Every client sends its headers first, so all of them are in flight together before any body
    is read; then each sends its body, the shed ones too, as a client that does not wait for an
    early answer would. The budget (64 MiB by default) takes 64 of them.
    """
    posts = 800
    async with receiver_process(bootstrap_servers) as rx, ClientSession() as session:
        await wait_ready(session, rx.base)
        port = int(rx.base.rsplit(":", 1)[1])
        connections = [await asyncio.open_connection("127.0.0.1", port) for _ in range(posts)]
        for _, writer in connections:
            writer.write(post_head(port, MIB))
        answers = [asyncio.ensure_future(read_answer(reader)) for reader, _ in connections]
        budget = 64 * MIB  # RECEIVER_MAX_IN_FLIGHT_BYTES' default
        async with asyncio.timeout(30):
            while sum(answer.done() for answer in answers) < posts - budget // MIB:
                await asyncio.sleep(0.05)
        held = [n for n, answer in enumerate(answers) if not answer.done()]
        for n, (_, writer) in enumerate(connections):
            writer.write(big_lead(n))
        async with asyncio.timeout(60):
            results = await asyncio.gather(*answers)
        peak = peak_rss_bytes(rx.proc.pid)
        for _, writer in connections:
            writer.close()
    assert len(held) == budget // MIB
    accepted = [n for n, result in enumerate(results) if result.status == 202]
    assert accepted == held, "each post the budget held was accepted, and only those"
    for result in results:
        if result.status != 202:
            assert (result.status, result.headers["Retry-After"]) == (503, "5")
            assert orjson.loads(result.body)["error"] == "overloaded"
    records = await read_all(bootstrap_servers, rx.raw_topic)
    published = {dict(record.headers)["event-id"].decode() for record in records}
    acknowledged = {orjson.loads(results[n].body)["event_id"] for n in accepted}
    assert acknowledged <= published, "a post answered 202 is in Kafka"
    assert peak < MEMORY_LIMIT_BYTES, f"peak RSS {peak / MIB:.0f} MiB"


async def test_a_client_that_stops_halfway_is_cut_off(bootstrap_servers: str) -> None:
    timeout_s = 1.0
    settings = {"RECEIVER_CLIENT_TIMEOUT_S": str(timeout_s)}
    async with receiver_process(bootstrap_servers, **settings) as rx, ClientSession() as session:
        await wait_ready(session, rx.base)
        port = int(rx.base.rsplit(":", 1)[1])
        head = post_head(port, 1_000)
        half_headers = await asyncio.open_connection("127.0.0.1", port)
        half_headers[1].write(head[: len(head) // 2])
        half_body = await asyncio.open_connection("127.0.0.1", port)
        half_body[1].write(head + b'{"id": "half", "padding": "' + b"x" * 400)
        # Far longer than the timeout, yet bounded: before, both stayed open indefinitely.
        async with asyncio.timeout(timeout_s * 20):
            assert await half_headers[0].read() == b"", "closed without an answer"
            answer = await read_answer(half_body[0])
            assert await half_body[0].read() == b"", "and then closed"
        for _, writer in (half_headers, half_body):
            writer.close()
        assert answer.status == 408
        assert orjson.loads(answer.body)["error"] == "request_timeout"
        async with session.post(
            f"{rx.base}/webhooks/outgrow?token={TOKEN}",
            data=b'{"id": "whole"}',
            headers={"Content-Type": "application/json"},
        ) as whole:
            assert whole.status == 202, "the receiver still serves"
    records = await read_all(bootstrap_servers, rx.raw_topic)
    assert [record.value for record in records] == [b'{"id": "whole"}']
