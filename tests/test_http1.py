"""The lean HTTP/1.1 client, against real servers on loopback: aiohttp's, and raw sockets that
answer the odd ways servers do (chunked, close-delimited, interim, cut short, garbage, silent)."""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import struct
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import uvloop
from aiohttp import web

from connector.errors import ConfigError
from connector.http1 import NoAnswer, Origin, Pool, request_head

BODY = b'{"attributes":[{"external_id":"u1","a":1}]}'


@asynccontextmanager
async def aiohttp_server(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncIterator[tuple[str, list[web.Request]]]:
    """An aiohttp server on a free loopback port; yields its base URL and the requests seen,
    each with the client port it came from as `remote`."""
    seen: list[web.Request] = []

    async def recording(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        seen.append(request.clone(remote=str(request.transport.get_extra_info("peername")[1])))
        return await handler(request)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", recording)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    port = runner.addresses[0][1]
    scheme = "https" if ssl_context else "http"
    try:
        yield f"{scheme}://{'localhost' if ssl_context else '127.0.0.1'}:{port}", seen
    finally:
        await runner.cleanup()


@asynccontextmanager
async def raw_server(
    answer: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> AsyncIterator[str]:
    """A socket server that reads one request head and lets `answer` write what it likes."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            await reader.readexactly(length)
            await answer(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()


def _head(url: str) -> bytes:
    return request_head(Origin.parse(url), "/users/track", [("Authorization", "Bearer k")])


async def _created(request: web.Request) -> web.Response:
    await request.read()
    return web.json_response({"message": "success"}, status=201)


# -- origins and heads -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "origin", "host"),
    [
        ("https://rest.iad-01.braze.com", Origin("https", "rest.iad-01.braze.com", 443),
         "rest.iad-01.braze.com"),
        ("http://127.0.0.1:9090/", Origin("http", "127.0.0.1", 9090), "127.0.0.1:9090"),
        ("http://sandbox:80/braze/", Origin("http", "sandbox", 80, "/braze"), "sandbox"),
        (" https://[::1]:8443 ", Origin("https", "::1", 8443), "[::1]:8443"),
    ],
)  # fmt: skip
def test_origin_reads_scheme_host_port_and_prefix(url: str, origin: Origin, host: str) -> None:
    assert Origin.parse(url) == origin
    assert origin.host_header == host


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("rest.iad-01.braze.com", "must start with http:// or https://"),
        ("ftp://braze.com", "must start with http:// or https://"),
        ("https://", "names no host"),
        ("https://user:secret@braze.com", "only a scheme, host, port and path"),
        ("https://braze.com?x=1", "only a scheme, host, port and path"),
        ("https://braze.com:99999", "not a URL"),
    ],
)
def test_origin_refuses_what_is_not_an_endpoint(url: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says) as caught:
        Origin.parse(url)
    assert "secret" not in str(caught.value) or "user:secret" in url


def test_head_is_a_post_with_host_and_refuses_line_breaks() -> None:
    head = request_head(Origin.parse("http://h:81/p"), "/users/track", [("X-A", "1")])
    assert head == b"POST /p/users/track HTTP/1.1\r\nHost: h:81\r\nX-A: 1\r\nContent-Length: "
    with pytest.raises(ConfigError, match="line break"):
        request_head(Origin.parse("http://h"), "/", [("X-A", "1\r\nX-B: 2")])


# -- answers -----------------------------------------------------------------------------------


async def test_posts_go_over_one_kept_alive_connection() -> None:
    async with (
        aiohttp_server(_created) as (url, seen),
        Pool(Origin.parse(url), limit=4, timeout_s=5) as pool,
    ):
        replies = [await pool.post(_head(url), BODY) for _ in range(5)]
        assert [reply.status for reply in replies] == [201] * 5
        assert replies[0].body == b'{"message": "success"}'
        assert replies[0].headers["content-type"].startswith("application/json")
        assert pool.connections == 1
    first = seen[0]
    assert first.method == "POST" and first.path == "/users/track"
    assert first.headers["Authorization"] == "Bearer k"
    assert first.headers["Host"] == url.removeprefix("http://")
    assert first.content_length == len(BODY)
    assert len({request.remote for request in seen}) == 1


async def test_chunked_answer_is_read_whole() -> None:
    async def chunked(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=400)
        response.enable_chunked_encoding()
        await response.prepare(request)
        for part in (b'{"message":', b'"bad', b' request"}'):
            await response.write(part)
        await response.write_eof()
        return response

    async with (
        aiohttp_server(chunked) as (url, _),
        Pool(Origin.parse(url), limit=1, timeout_s=5) as pool,
    ):
        reply = await pool.post(_head(url), BODY)
        assert (reply.status, reply.body) == (400, b'{"message":"bad request"}')
        assert (await pool.post(_head(url), BODY)).status == 400
        assert pool.connections == 1


async def test_body_that_runs_to_the_close_is_read_and_the_connection_not_reused() -> None:
    async def until_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 201 Created\r\nX-Ratelimit-Limit: 10\r\n\r\n")
        await writer.drain()
        writer.write(b'{"message":"success"}')
        await writer.drain()

    async with (
        raw_server(until_close) as url,
        Pool(Origin.parse(url), limit=1, timeout_s=5) as pool,
    ):
        for _ in range(2):
            reply = await pool.post(_head(url), BODY)
            assert (reply.status, reply.body) == (201, b'{"message":"success"}')
            assert reply.headers["x-ratelimit-limit"] == "10"
        assert pool.connections == 0


async def test_connection_close_is_honoured() -> None:
    async def closing(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response(
            {"message": "success"}, status=201, headers={"Connection": "close"}
        )

    async with (
        aiohttp_server(closing) as (url, seen),
        Pool(Origin.parse(url), limit=2, timeout_s=5) as pool,
    ):
        assert [(await pool.post(_head(url), BODY)).status for _ in range(3)] == [201] * 3
        assert len({request.remote for request in seen}) == 3
        assert pool.connections == 0


async def test_interim_answer_is_skipped_for_the_real_one() -> None:
    async def interim(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        writer.write(b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n{}")
        await writer.drain()
        await asyncio.sleep(0.05)

    async with raw_server(interim) as url, Pool(Origin.parse(url), limit=1, timeout_s=5) as pool:
        reply = await pool.post(_head(url), BODY)
        assert (reply.status, reply.body) == (201, b"{}")


# -- no answer ---------------------------------------------------------------------------------


async def _no_answer(url: str, timeout_s: float = 5) -> str:
    async with Pool(Origin.parse(url), limit=1, timeout_s=timeout_s) as pool:
        with pytest.raises(NoAnswer) as caught:
            await pool.post(_head(url), BODY)
        assert pool.connections == 0
        return str(caught.value)


async def test_refused_connection_is_no_answer() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    assert (await _no_answer(f"http://127.0.0.1:{port}")).startswith("cannot connect")


async def test_silent_server_times_out() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)

    async with raw_server(silent) as url:
        started = asyncio.get_running_loop().time()
        assert await _no_answer(url, timeout_s=0.3) == "timed out waiting for the answer"
        assert asyncio.get_running_loop().time() - started < 3


async def test_answer_cut_short_is_no_answer() -> None:
    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b'HTTP/1.1 201 Created\r\nContent-Length: 100\r\n\r\n{"mess')
        await writer.drain()

    async with raw_server(cut) as url:
        assert await _no_answer(url) == "connection closed before the answer"


async def test_garbage_is_no_answer() -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"SMTP ready\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(0.5)

    async with raw_server(garbage) as url:
        assert (await _no_answer(url)).startswith("unreadable answer")


async def test_body_running_to_a_reset_is_no_answer() -> None:
    async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b'HTTP/1.1 201 Created\r\n\r\n{"message":"succ')
        await writer.drain()
        await asyncio.sleep(0.05)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    async with raw_server(reset) as url:
        assert await _no_answer(url) == "connection closed before the answer"


# -- connections -------------------------------------------------------------------------------


async def test_no_more_connections_than_the_limit() -> None:
    busy, most = 0, 0

    async def slow(request: web.Request) -> web.Response:
        nonlocal busy, most
        busy += 1
        most = max(most, busy)
        await asyncio.sleep(0.05)
        busy -= 1
        return await _created(request)

    async with (
        aiohttp_server(slow) as (url, seen),
        Pool(Origin.parse(url), limit=2, timeout_s=5) as pool,
    ):
        replies = await asyncio.gather(*(pool.post(_head(url), BODY) for _ in range(8)))
        assert {reply.status for reply in replies} == {201}
        assert most == 2
        assert len({request.remote for request in seen}) == 2


async def test_connection_the_server_dropped_while_idle_is_not_reused() -> None:
    async with (
        aiohttp_server(_created) as (url, seen),
        Pool(Origin.parse(url), limit=1, timeout_s=5) as pool,
    ):
        assert (await pool.post(_head(url), BODY)).status == 201
        transport = seen[0].transport
        assert transport is not None
        transport.close()  # the server ends the idle keep-alive connection
        await asyncio.sleep(0.05)
        assert (await pool.post(_head(url), BODY)).status == 201
        assert seen[1].remote != seen[0].remote


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_connection_closing_but_not_yet_told_is_not_reused(loop: str) -> None:
    async def main() -> tuple[int, int]:
        async with (
            aiohttp_server(_created) as (url, seen),
            Pool(Origin.parse(url), limit=1, timeout_s=5) as pool,
        ):
            assert (await pool.post(_head(url), BODY)).status == 201
            idle = pool._idle[0]
            assert idle.transport is not None
            idle.transport.close()  # closing now; connection_lost comes on a later turn
            reply = await pool.post(_head(url), BODY)
            return reply.status, len({request.remote for request in seen})

    run = uvloop.run if loop == "uvloop" else asyncio.run
    assert run(main()) == (201, 2)


async def test_cancelled_request_drops_its_connection_and_the_pool_goes_on() -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(0.3)
        return await _created(request)

    async with (
        aiohttp_server(slow) as (url, _),
        Pool(Origin.parse(url), limit=1, timeout_s=5) as pool,
    ):
        task = asyncio.create_task(pool.post(_head(url), BODY))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert pool.connections == 0
        assert (await pool.post(_head(url), BODY)).status == 201


def test_works_on_uvloop_as_the_worker_runs() -> None:
    async def main() -> list[int]:
        async with (
            aiohttp_server(_created) as (url, _),
            Pool(Origin.parse(url), limit=2, timeout_s=5) as pool,
        ):
            return [(await pool.post(_head(url), BODY)).status for _ in range(3)]

    assert uvloop.run(main()) == [201] * 3


# -- TLS ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A self-signed certificate for `localhost`, its key beside it."""
    if shutil.which("openssl") is None:
        pytest.fail("the openssl command makes the test certificate")
    root = tmp_path_factory.mktemp("tls")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-noenc", "-keyout", "key.pem", "-out", "cert.pem", "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost"],
        cwd=root, check=True, capture_output=True,
    )  # fmt: skip
    return root


async def test_https_with_a_trusted_certificate(certificate: Path) -> None:
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    served.load_cert_chain(certificate / "cert.pem", certificate / "key.pem")
    trusting = ssl.create_default_context(cafile=str(certificate / "cert.pem"))
    async with aiohttp_server(_created, served) as (url, seen):
        async with Pool(Origin.parse(url), limit=1, timeout_s=5, ssl_context=trusting) as pool:
            assert (await pool.post(_head(url), BODY)).status == 201
        assert seen[0].secure
        async with Pool(Origin.parse(url), limit=1, timeout_s=5) as stranger:
            with pytest.raises(NoAnswer, match="TLS failed"):
                await stranger.post(_head(url), BODY)
