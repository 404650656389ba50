"""The Braze client's response table, rate signals and budget-shaped limiter, and the client
against real servers on loopback: aiohttp's, and raw sockets that answer the odd ways servers do
(chunked, close-delimited, cut short, garbage, silent, reset)."""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from pathlib import Path

import orjson
import pytest
import uvloop
from aiohttp import web

from connector.braze import (
    Action,
    AdaptiveLimiter,
    Answer,
    BrazeClient,
    RateBudget,
    action_for,
    api_url,
    retry_after,
)
from connector.config import WorkerSettings, load
from connector.errors import ConfigError
from tests.http_support import (
    aiohttp_server,
    make_certificate,
    raw_server,
    serving_context,
)

KEY = "a-braze-key-4d1c"
BODY = orjson.dumps({"attributes": [{"external_id": "u1", "a": 1}]})


@pytest.mark.parametrize(
    ("status", "action"),
    [
        (201, Action.DONE),
        (200, Action.DONE),
        (400, Action.SPLIT),
        (413, Action.SPLIT),
        (401, Action.HALT),
        (403, Action.HALT),
        (404, Action.HALT),
        (415, Action.HALT),
        (429, Action.RETRY),
        (500, Action.RETRY),
        (502, Action.RETRY),
        (503, Action.RETRY),
        (504, Action.RETRY),
        (0, Action.RETRY),
        (408, Action.RETRY),
        (422, Action.HALT),
        (302, Action.HALT),
    ],
)
def test_response_table(status: int, action: Action) -> None:
    assert action_for(status) is action


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"X-Ratelimit-Retry-After": "7"}, 7.0),
        ({"Retry-After": "2"}, 2.0),
        ({"X-RateLimit-Reset": "1000000030"}, 30.0),
        ({"X-RateLimit-Reset": "12"}, 12.0),
        ({"X-RateLimit-Reset": "soon"}, None),
        ({"X-Ratelimit-Retry-After": "later"}, None),
        ({}, None),
    ],
)
def test_retry_after_reads_braze_headers(headers: dict[str, str], seconds: float | None) -> None:
    assert retry_after(headers, now=1_000_000_000.0) == seconds


def test_reset_in_the_past_means_no_wait() -> None:
    assert retry_after({"X-RateLimit-Reset": "1000000000"}, now=1_000_000_100.0) == 0.0


@pytest.mark.parametrize(
    ("text", "requests", "period"),
    [("3000/3s", 3000, 3.0), ("250/1m", 250, 60.0), ("100/500ms", 100, 0.5), ("60/m", 60, 60.0)],
)
def test_rate_budget_parses(text: str, requests: int, period: float) -> None:
    assert RateBudget.parse(text) == RateBudget(requests, period)


@pytest.mark.parametrize("text", ["3000", "0/3s", "3000/3d", "fast", "10/0s"])
def test_rate_budget_refuses_nonsense(text: str) -> None:
    with pytest.raises(ConfigError, match="rate"):
        RateBudget.parse(text)


def test_limiter_rate_follows_share_and_throttling() -> None:
    limiter = AdaptiveLimiter(RateBudget(3000, 0.001), share=0.5)
    assert limiter.requests_per_s == pytest.approx(1_500_000)
    limiter.throttled(2.0)
    limiter.throttled(2.0)  # the same pause: cut once
    assert limiter.requests_per_s == pytest.approx(750_000)
    assert limiter.paused_until > time.monotonic() + 1.5
    limiter.paused_until = 0.0
    for _ in range(4):
        limiter._changed_at = 0.0  # as if a tenth of the period has passed
        limiter.succeeded()
    assert limiter.requests_per_s == pytest.approx(1_500_000 * 0.7)
    for _ in range(100):
        limiter._changed_at = 0.0
        limiter.succeeded()
    assert limiter.requests_per_s == pytest.approx(1_500_000)
    limiter.set_share(0.25)
    assert limiter.requests_per_s == pytest.approx(750_000)


def test_throttling_never_goes_below_the_floor() -> None:
    limiter = AdaptiveLimiter(RateBudget(100, 1.0))
    for _ in range(20):
        limiter.throttled(0)
        limiter.paused_until = 0.0
    assert limiter.requests_per_s == pytest.approx(5)


async def test_no_window_of_the_period_exceeds_the_budget() -> None:
    """An upper bound: a slow machine only lowers the counts, so this cannot flake that way."""
    budget = RateBudget(40, 0.5)
    limiter = AdaptiveLimiter(budget)
    stamps: list[float] = []
    deadline = time.monotonic() + 1.6

    async def client() -> None:
        while time.monotonic() < deadline:
            await limiter.acquire()
            stamps.append(time.monotonic())

    await asyncio.gather(*(client() for _ in range(20)))
    busiest = max(
        sum(1 for t in stamps if start <= t < start + budget.period_s) for start in stamps
    )
    assert busiest <= budget.requests
    assert len(stamps) >= budget.requests  # it did let work through


async def test_slots_taken_at_once_count_against_the_bucket() -> None:
    limiter = AdaptiveLimiter(RateBudget(1_000, 10.0))  # a bucket of 40, 9.6 a second drip
    assert limiter.free_now() == 40
    limiter.take_now(40)
    assert limiter.free_now() == 0
    assert limiter.seconds_to_free() == pytest.approx(1 / 96, rel=0.2)
    await asyncio.sleep(limiter.seconds_to_free() + 0.001)
    assert limiter.free_now() >= 1  # a slow machine sleeps longer: more may have dripped


async def test_no_slot_at_once_during_a_pause_or_while_a_retry_waits() -> None:
    limiter = AdaptiveLimiter(RateBudget(1_000, 1.0))
    limiter.throttled(0.2)
    assert limiter.free_now() == 0
    assert limiter.seconds_to_free() == pytest.approx(0.2, abs=0.05)
    limiter.paused_until = 0.0
    free = limiter.free_now()
    limiter.take_now(free)
    waiting = asyncio.ensure_future(limiter.acquire())
    await asyncio.sleep(0)  # it waits in the bucket, first in line
    assert not waiting.done()
    assert limiter.free_now() == 0
    await asyncio.wait_for(waiting, 1.0)
    await asyncio.sleep(0.01)  # the retry went; new slots follow as the bucket drips
    assert limiter.free_now() >= 1


# -- endpoints ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("endpoint", "url"),
    [
        ("https://rest.iad-01.braze.com", "https://rest.iad-01.braze.com/users/track"),
        ("http://127.0.0.1:9090/", "http://127.0.0.1:9090/users/track"),
        (" http://sandbox:80/braze/ ", "http://sandbox/braze/users/track"),
        ("https://[::1]:8443", "https://[::1]:8443/users/track"),
    ],
)
def test_the_endpoint_gives_the_url(endpoint: str, url: str) -> None:
    assert str(api_url(endpoint, "/users/track")) == url


@pytest.mark.parametrize(
    ("endpoint", "says"),
    [
        ("rest.iad-01.braze.com", "must start with http:// or https://"),
        ("ftp://braze.com", "must start with http:// or https://"),
        ("https://", "names no host"),
        ("https://user:secret@braze.com", "only a scheme, host, port and path"),
        ("https://braze.com?x=1", "only a scheme, host, port and path"),
        ("https://braze.com:99999", "not a URL"),
    ],
)
def test_client_refuses_an_endpoint_it_cannot_post_to(endpoint: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says) as caught:
        BrazeClient(endpoint, "key", timeout_s=1, connections=1)
    assert "BRAZE_REST_ENDPOINT" in str(caught.value)
    assert "secret" not in str(caught.value)


@pytest.mark.parametrize("key", ["a-key\n", "a-key\r\nX-Other: 1", "a\tkey"])
def test_a_key_that_cannot_be_a_header_is_refused_when_read(key: str) -> None:
    with pytest.raises(ConfigError, match="BRAZE_API_KEY: holds a line break") as caught:
        load(WorkerSettings, {"braze_api_key": key})
    assert "a-key" not in str(caught.value)


# -- answers -----------------------------------------------------------------------------------


async def _created(request: web.Request) -> web.Response:
    await request.read()
    return web.json_response({"message": "success"}, status=201)


async def _track(url: str, *, timeout_s: float = 5, times: int = 1) -> list[Answer]:
    async with BrazeClient(url, KEY, timeout_s=timeout_s, connections=4) as client:
        return [await client.track(BODY) for _ in range(times)]


async def test_posts_go_over_one_kept_alive_connection() -> None:
    async with aiohttp_server(_created) as (url, seen):
        answers = await _track(url + "/prefix/", times=5)
    assert {(a.status, a.action, a.message) for a in answers} == {(201, Action.DONE, "success")}
    first = seen[0]
    assert (first.method, first.path) == ("POST", "/prefix/users/track")
    assert first.headers["Authorization"] == f"Bearer {KEY}"
    assert first.headers["Content-Type"] == "application/json"
    assert first.headers["User-Agent"] == "outgrow-braze"
    assert first.content_length == len(BODY)
    assert len({request.remote for request in seen}) == 1


async def test_an_answer_is_classified_with_its_errors_and_rate_headers() -> None:
    async def refused(request: web.Request) -> web.Response:
        await request.read()
        errors = [{"type": "bad email", "index": 0}, "not an object"]
        return web.json_response(
            {"message": "success", "errors": errors}, status=201, headers={"Retry-After": "3"}
        )

    async with aiohttp_server(refused) as (url, _):
        (answer,) = await _track(url)
    assert (answer.status, answer.action) == (201, Action.DONE)
    assert answer.errors == ({"type": "bad email", "index": 0},)
    assert answer.retry_after_s == 3.0


@pytest.mark.parametrize(
    ("status", "body", "action", "message"),
    [
        (201, b'{"message": "fatal error"}', Action.RETRY, "fatal error"),  # never counted applied
        (200, b"<html>proxy error</html>", Action.RETRY, "<html>proxy error</html>"),
        (400, b'{"message": "Invalid request"}', Action.SPLIT, "Invalid request"),
        (401, f'{{"message": "Invalid API key: {KEY}"}}'.encode(), Action.HALT,
         "Invalid API key: <api-key>"),
        (503, b"", Action.RETRY, ""),
        (429, b"[]", Action.RETRY, ""),
    ],
)  # fmt: skip
async def test_odd_answers_are_read_safely_and_the_key_never_shows(
    status: int, body: bytes, action: Action, message: str
) -> None:
    async def answering(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=status, body=body)

    async with aiohttp_server(answering) as (url, _):
        (answer,) = await _track(url)
    assert (answer.status, answer.action, answer.message) == (status, action, message)


async def test_chunked_answer_is_read_whole() -> None:
    async def chunked(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=400)
        response.enable_chunked_encoding()
        await response.prepare(request)
        for part in (b'{"message":', b'"bad', b' request"}'):
            await response.write(part)
        await response.write_eof()
        return response

    async with aiohttp_server(chunked) as (url, _):
        answers = await _track(url, times=2)
    assert [(a.status, a.message) for a in answers] == [(400, "bad request")] * 2


async def test_a_body_that_runs_to_the_close_is_read() -> None:
    async def until_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 201 Created\r\nX-Ratelimit-Retry-After: 2\r\n\r\n")
        writer.write(b'{"message":"success"}')
        await writer.drain()

    async with raw_server(until_close) as url:
        answers = await _track(url, times=2)
    assert [(a.action, a.message, a.retry_after_s) for a in answers] == [
        (Action.DONE, "success", 2.0)
    ] * 2


async def test_an_interim_answer_is_skipped_for_the_real_one() -> None:
    async def interim(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        writer.write(b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n{}")
        await writer.drain()
        await asyncio.sleep(0.05)

    async with raw_server(interim) as url:
        (answer,) = await _track(url)
    assert (answer.status, answer.action) == (201, Action.DONE)


# -- no answer: a retry, never an exception ----------------------------------------------------


async def _no_answer(url: str, timeout_s: float = 5) -> str:
    (answer,) = await _track(url, timeout_s=timeout_s)
    assert (answer.status, answer.action, answer.errors) == (0, Action.RETRY, ())
    assert answer.message.startswith("no answer from Braze: ")
    assert KEY not in answer.message
    return answer.message.removeprefix("no answer from Braze: ")


async def test_a_refused_connection_is_a_retry() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    assert (await _no_answer(f"http://127.0.0.1:{port}")).startswith("cannot connect")


async def test_a_silent_server_times_out() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)

    async with raw_server(silent) as url:
        started = time.monotonic()
        assert await _no_answer(url, timeout_s=0.3) == "timed out"
        assert time.monotonic() - started < 3


async def _writes(data: bytes, then_reset: bool = False) -> Answer:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(data)
        await writer.drain()
        await asyncio.sleep(0.05)
        if then_reset:
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    async with raw_server(answer) as url:
        (answer,) = await _track(url)
    return answer


async def test_an_answer_cut_short_is_a_retry() -> None:
    answer = await _writes(b'HTTP/1.1 201 Created\r\nContent-Length: 100\r\n\r\n{"mess')
    assert (answer.status, answer.action) == (0, Action.RETRY)


async def test_garbage_is_a_retry() -> None:
    answer = await _writes(b"SMTP ready\r\n\r\n")
    assert (answer.status, answer.action) == (0, Action.RETRY)
    assert answer.message.startswith("no answer from Braze: ")


async def test_a_body_running_to_a_reset_is_a_retry() -> None:
    """Where a close-delimited body ends, a reset is its end: the half body is no success."""
    answer = await _writes(b'HTTP/1.1 201 Created\r\n\r\n{"message":"succ', then_reset=True)
    assert answer.action is Action.RETRY
    assert answer.status in (0, 201)


# -- connections -------------------------------------------------------------------------------


async def test_no_more_connections_than_asked() -> None:
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
        BrazeClient(url, KEY, timeout_s=5, connections=2) as client,
    ):
        answers = await asyncio.gather(*(client.track(BODY) for _ in range(8)))
    assert {answer.status for answer in answers} == {201}
    assert most == 2
    assert len({request.remote for request in seen}) == 2


async def test_a_connection_the_server_closed_while_idle_is_not_reused() -> None:
    async with (
        aiohttp_server(_created) as (url, seen),
        BrazeClient(url, KEY, timeout_s=5, connections=1) as client,
    ):
        assert (await client.track(BODY)).status == 201
        transport = seen[0].transport
        assert transport is not None
        transport.close()  # the server ends the idle keep-alive connection
        await asyncio.sleep(0.05)
        assert (await client.track(BODY)).status == 201
    assert seen[1].remote != seen[0].remote


async def test_a_cancelled_request_leaves_the_client_working() -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(0.3)
        return await _created(request)

    async with (
        aiohttp_server(slow) as (url, _),
        BrazeClient(url, KEY, timeout_s=5, connections=1) as client,
    ):
        task = asyncio.create_task(client.track(BODY))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert (await client.track(BODY)).status == 201


def test_works_on_uvloop_as_the_worker_runs() -> None:
    async def main() -> list[int]:
        async with aiohttp_server(_created) as (url, _):
            return [answer.status for answer in await _track(url, times=3)]

    assert uvloop.run(main()) == [201] * 3


# -- TLS ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_certificate(tmp_path_factory.mktemp("tls"))


async def test_https_is_verified_against_the_ca_file(certificate: Path) -> None:
    async with aiohttp_server(_created, serving_context(certificate)) as (url, seen):
        ca_file = str(certificate / "cert.pem")
        async with BrazeClient(url, KEY, timeout_s=5, connections=1, ca_file=ca_file) as client:
            assert (await client.track(BODY)).status == 201
        assert seen[0].secure
        assert (await _no_answer(url)).startswith("TLS failed")
