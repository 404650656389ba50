"""The webhook receiver: authenticate, check, publish to Kafka, answer 2xx only after the ack."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from connector.auth import Credentials, credentials_from
from connector.config import KafkaSettings, ReceiverSettings, TopicSettings
from connector.errors import KafkaUnavailable, RecordTooLarge
from connector.keys import record_key
from connector.mapping import Mapping
from connector.metrics import CONTENT_TYPE_LATEST, ReceiverMetrics
from connector.payloads import ACCEPTED_TYPES, InvalidBody, parse
from connector.producer import Headers, Publisher
from connector.runtime import tune_gc
from connector.signals import stop_on_signals
from connector.topics import ensure_topics

log = logging.getLogger(__name__)

SOURCE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
DEFAULT_SOURCE = "default"
WEBHOOK_PATH = "/webhooks/outgrow"


@dataclass
class ReceiverState:
    """What the handlers share: settings, collaborators and the draining flag."""

    settings: ReceiverSettings
    credentials: Credentials
    mapping: Mapping  # its identity rules key the records
    publisher: Publisher
    metrics: ReceiverMetrics = field(default_factory=ReceiverMetrics)
    draining: bool = False
    in_flight: int = 0
    in_flight_bytes: int = 0

    def __post_init__(self) -> None:
        self.metrics.in_flight.set_function(lambda: self.in_flight)
        self.metrics.in_flight_bytes.set_function(lambda: self.in_flight_bytes)


class Refusal(Exception):
    """A post refused with a status, an error code and a sentence for the caller."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        retry_after_s: int | None = None,
        allow: str | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after_s = retry_after_s
        self.allow = allow


def error_response(refusal: Refusal) -> web.Response:
    """Render a refusal as the JSON error body every client gets."""
    headers = {}
    if refusal.retry_after_s is not None:
        headers["Retry-After"] = str(refusal.retry_after_s)
    if refusal.status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="outgrow-braze"'
    if refusal.allow is not None:
        headers["Allow"] = refusal.allow
    body = {"error": refusal.code, "message": refusal.message}
    return web.json_response(body, status=refusal.status, headers=headers, dumps=_dumps)


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


Endpoint = Callable[[web.BaseRequest, ReceiverState], Awaitable[web.StreamResponse]]


async def receive(request: web.BaseRequest, state: ReceiverState) -> web.Response:
    """Handle one Outgrow post: shed, authenticate, check, publish, acknowledge."""
    _shed_if_needed(state)
    state.in_flight += 1
    body = Body(state)
    try:
        return await _receive(request, state, body)
    finally:
        state.in_flight -= 1
        body.release()


def _shed_if_needed(state: ReceiverState) -> None:
    retry = state.settings.receiver_retry_after_s
    if state.draining:
        raise Refusal(503, "draining", "the receiver is shutting down; retry shortly", retry)
    if state.in_flight >= state.settings.receiver_max_in_flight:
        raise Refusal(503, "overloaded", "too many posts in flight; retry shortly", retry)


async def _receive(request: web.BaseRequest, state: ReceiverState, held: Body) -> web.Response:
    _authenticate(request, state.credentials)
    source = _source(request)
    mime_type = _mime_type(request)
    body = await held.read(request)
    try:
        document = parse(body, mime_type)
    except InvalidBody as exc:
        raise Refusal(400, exc.code, exc.message) from None
    event_id, received_at_ms = new_event_id(), time.time_ns() // 1_000_000
    headers = _record_headers(request, source, event_id, received_at_ms)
    key = record_key(state.mapping, document, source, received_at_ms)
    delivery = await _publish(state, key, body, headers)
    state.metrics.body_bytes.observe(len(body))
    answer = {
        "status": "accepted",
        "event_id": event_id,
        "partition": delivery.partition,
        "offset": delivery.offset,
    }
    return web.Response(body=orjson.dumps(answer), status=202, content_type="application/json")


def _authenticate(request: web.BaseRequest, credentials: Credentials) -> None:
    authorization = request.headers.get("Authorization")
    token = request.query.get("token")
    if not credentials.allows(authorization, token):
        raise Refusal(401, "unauthorized", "missing or wrong webhook credentials")


def _source(request: web.BaseRequest) -> str:
    source = request.path[len(WEBHOOK_PATH) + 1 :]
    if not source:
        return DEFAULT_SOURCE
    if not SOURCE.match(source):
        raise Refusal(
            400,
            "invalid_source",
            "the source label must be 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit",
        )
    return source


def _mime_type(request: web.BaseRequest) -> str:
    mime_type = request.content_type
    if "Content-Type" not in request.headers or mime_type not in ACCEPTED_TYPES:
        raise Refusal(
            415,
            "unsupported_media_type",
            "send application/json or application/x-www-form-urlencoded",
        )
    return mime_type


def _too_large(limit: int) -> Refusal:
    return Refusal(413, "payload_too_large", f"the body is larger than {limit} bytes")


class Body:
    """One post's body, read within the receiver's byte budget and its client timeout.

    A body counts against RECEIVER_MAX_IN_FLIGHT_BYTES from the moment its Content-Length is
    known (or byte by byte as read, without one) until the post is answered, so the bodies held
    at once never pass the budget: a post that would pass it is shed with 503 before its body
    is read. A client that has not sent its whole body within RECEIVER_CLIENT_TIMEOUT_S gets 408.
    """

    def __init__(self, state: ReceiverState) -> None:
        self.state = state
        self.held = 0

    def take(self, size: int) -> None:
        """Count `size` more bytes against the budget, or shed the post if they do not fit."""
        settings = self.state.settings
        if self.state.in_flight_bytes + size > settings.receiver_max_in_flight_bytes:
            raise Refusal(
                503,
                "overloaded",
                "too many bytes of posts in flight; retry shortly",
                settings.receiver_retry_after_s,
            )
        self.state.in_flight_bytes += size
        self.held += size

    def release(self) -> None:
        """Give the body's bytes back to the budget once its post is answered."""
        self.state.in_flight_bytes -= self.held
        self.held = 0

    async def read(self, request: web.BaseRequest) -> bytes:
        """Read the whole body: 413 over the size limit, 503 over the budget, 408 if too slow."""
        settings = self.state.settings
        limit, declared = settings.receiver_max_body_bytes, request.content_length
        if declared is not None:
            if declared > limit:
                raise _too_large(limit)
            self.take(declared)
        try:
            async with asyncio.timeout(settings.receiver_client_timeout_s):
                return await self._chunks(request, limit, counted=declared is not None)
        except TimeoutError:
            raise Refusal(
                408, "request_timeout", "the body did not arrive in time; send it again"
            ) from None

    async def _chunks(self, request: web.BaseRequest, limit: int, counted: bool) -> bytes:
        chunks, size = [], 0
        while chunk := await request.content.readany():
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            if not counted:
                self.take(len(chunk))
            chunks.append(chunk)
        return b"".join(chunks)  # a lone chunk comes back as it is, not copied


class _EventIds:
    """Version 4 UUIDs, made a thousand at a time from one read of the system's randomness."""

    def __init__(self, batch: int = 1024) -> None:
        self._batch = batch
        self._ids: list[str] = []

    def __call__(self) -> str:
        if not self._ids:
            self._ids = [_uuid4_text(raw) for raw in _chunks(os.urandom(16 * self._batch), 16)]
        return self._ids.pop()


def _chunks(data: bytes, size: int) -> list[bytes]:
    return [data[at : at + size] for at in range(0, len(data), size)]


def _uuid4_text(raw: bytes) -> str:
    """The canonical text of a version 4, RFC 4122 variant UUID made of 16 random bytes."""
    h = raw.hex()
    variant = "89ab"[int(h[16], 16) & 3]
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{variant}{h[17:20]}-{h[20:32]}"


new_event_id = _EventIds()


def _record_headers(
    request: web.BaseRequest, source: str, event_id: str, received_at_ms: int
) -> Headers:
    return (
        ("content-type", request.headers["Content-Type"].encode("latin-1")),
        ("received-at", str(received_at_ms).encode()),
        ("source", source.encode()),
        ("event-id", event_id.encode()),
    )


async def _publish(state: ReceiverState, key: bytes | None, body: bytes, headers: Headers) -> Any:
    settings = state.settings
    started = time.perf_counter()
    try:
        delivery = await state.publisher.publish(
            key, body, headers, settings.receiver_publish_timeout_s
        )
    except KafkaUnavailable as exc:
        log.warning("publish failed", extra={"error": str(exc)})
        raise Refusal(
            503,
            "kafka_unavailable",
            "Kafka did not take the post in time; retry shortly",
            settings.receiver_retry_after_s,
        ) from None
    except RecordTooLarge as exc:
        raise Refusal(413, "message_too_large", str(exc)) from None
    state.metrics.publish_seconds.observe(time.perf_counter() - started)
    return delivery


async def healthz(request: web.BaseRequest, state: ReceiverState) -> web.Response:
    """Answer while the process is alive."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.BaseRequest, state: ReceiverState) -> web.Response:
    """Answer 200 only while posts can be published and the receiver is not draining."""
    reason = await _not_ready_reason(state)
    if reason:
        return web.json_response({"status": "not_ready", "reason": reason}, status=503)
    return web.json_response({"status": "ready"})


async def metrics(request: web.BaseRequest, state: ReceiverState) -> web.Response:
    """Expose the Prometheus metrics, with readiness as /readyz would answer now."""
    await _not_ready_reason(state)
    return web.Response(body=state.metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _not_ready_reason(state: ReceiverState) -> str | None:
    """Why the receiver is not ready (None when it is); `outgrow_receiver_ready` follows it."""
    reason = "draining" if state.draining else await state.publisher.not_ready_reason()
    state.metrics.ready.set(0 if reason else 1)
    return reason


_READ = frozenset({"GET", "HEAD"})
_WRITE = frozenset({"POST"})

ROUTES: dict[str, tuple[frozenset[str], Endpoint]] = {
    WEBHOOK_PATH: (_WRITE, receive),
    "/healthz": (_READ, healthz),
    "/readyz": (_READ, readyz),
    "/metrics": (_READ, metrics),
}
"""Path -> (methods, endpoint); `/webhooks/outgrow/{source}` goes where `/webhooks/outgrow` does."""


def _route(path: str) -> tuple[frozenset[str], Endpoint]:
    route = ROUTES.get(path)
    if route is not None:
        return route
    head, _, source = path.rpartition("/")
    if head == WEBHOOK_PATH and source:
        return ROUTES[WEBHOOK_PATH]
    raise Refusal(404, "not_found", f"no such endpoint; webhooks are posted to {WEBHOOK_PATH}")


async def handle(request: web.BaseRequest, state: ReceiverState) -> web.StreamResponse:
    """Route one request; refusals become JSON errors, and every webhook answer is counted."""
    try:
        methods, endpoint = _route(request.path)
        if request.method not in methods:
            allow = ", ".join(sorted(methods))
            raise Refusal(405, "method_not_allowed", f"this endpoint accepts {allow}", allow=allow)
        response = await endpoint(request, state)
    except Refusal as refusal:
        state.metrics.requests.labels(str(refusal.status), refusal.code).inc()
        return error_response(refusal)
    if response.status == 202:
        state.metrics.accepted.inc()
    return response


def create_server(state: ReceiverState) -> web.Server:
    """The receiver's HTTP server: aiohttp's low-level server, routed by `handle`.

    No application, router or middleware: at thousands of webhooks a second per core their
    per-request cost is a tenth of the receiver's CPU.

    aiohttp closes a connection whose request has not fully arrived when its keep-alive timer
    runs out, a timer that starts with the connection and again after each answer: that timer
    is the limit on sending headers (3,630 s by default), so it is the client timeout. The body
    has its own deadline (`Body.read`); after an early answer (401, 413, 503) the rest of an
    unread body is drained for no longer than that either.
    """
    timeout_s = state.settings.receiver_client_timeout_s
    return web.Server(
        functools.partial(handle, state=state),
        access_log=None,
        keepalive_timeout=timeout_s,
        lingering_time=min(_LINGERING_S, timeout_s),
    )


# aiohttp's default: how long an unread body is drained after an early answer, so that the
# client reads the answer rather than a connection reset.
_LINGERING_S = 10.0


@dataclass(frozen=True)
class ReceiverConfig:
    """Everything the receiver service needs, parsed at the edge."""

    kafka: KafkaSettings
    topics: TopicSettings
    receiver: ReceiverSettings
    mapping: Mapping  # MAPPING_FILE, loaded and checked: its identity rules key the records
    # Retired settings still set in the environment, with why each is no longer read.
    retired: dict[str, str] = field(default_factory=dict)


async def serve(config: ReceiverConfig, stop: asyncio.Event | None = None) -> None:
    """Run the receiver until SIGTERM/SIGINT (or `stop`), then drain and flush."""
    settings = config.receiver
    credentials = credentials_from(settings)
    tune_gc()
    if credentials.open:
        log.warning("receiver runs WITHOUT authentication (insecure development mode)")
    if config.retired:
        log.warning(
            "settings no longer read: " + "; ".join(f"{k}: {v}" for k, v in config.retired.items())
        )
    if settings.receiver_ensure_topics:
        await ensure_topics(config.kafka, config.topics)
    stop = stop or stop_on_signals()
    max_request = config.topics.topic_max_message_bytes
    async with Publisher(config.kafka, config.topics.raw_topic, max_request) as publisher:
        state = ReceiverState(settings, credentials, config.mapping, publisher)
        await _run_http(state, stop)


async def _run_http(state: ReceiverState, stop: asyncio.Event) -> None:
    settings = state.settings
    runner = web.ServerRunner(
        create_server(state),
        handle_signals=False,
        shutdown_timeout=settings.receiver_drain_timeout_s,
    )
    await runner.setup()
    site = web.TCPSite(runner, settings.receiver_host, settings.receiver_port)
    await site.start()
    log.info("receiver listening", extra={"url": site.name})
    try:
        await stop.wait()
    finally:
        state.draining = True
        log.info("draining", extra={"in_flight": state.in_flight})
        await asyncio.sleep(settings.receiver_shutdown_delay_s)
        await runner.cleanup()
    log.info("receiver stopped")
