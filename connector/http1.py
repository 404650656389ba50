"""A lean HTTP/1.1 client for POSTing JSON to one origin over keep-alive connections.

The worker sends a few hundred /users/track requests a second to one Braze endpoint, and
aiohttp's general client spent about 300 CPU µs on each (request objects, header multidicts,
timers, streams): a tenth of the worker's CPU. This client does only what that traffic needs:
one origin, POST with a body, a response read whole, parsed by httptools (llhttp, the parser
Node.js uses) with Content-Length, chunked and close-delimited bodies. It takes about a third of
the CPU per request.

Every failure to get an answer (refused, reset, closed early, timed out, unparsable) is raised as
`NoAnswer`, which says why in a few words and never carries the request.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import NamedTuple, cast
from urllib.parse import urlsplit

import httptools
from multidict import CIMultiDict, CIMultiDictProxy

from connector.errors import ConfigError

IDLE_S = 15.0  # an idle connection older than this is closed rather than reused (servers drop them)
DEFAULT_PORTS = {"http": 80, "https": 443}


class NoAnswer(Exception):
    """No HTTP answer came: the request may or may not have reached the server."""


class Reply(NamedTuple):
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes


@dataclass(frozen=True)
class Origin:
    """Where requests go: scheme, host and port, and the path prefix of the endpoint."""

    scheme: str
    host: str
    port: int
    prefix: str = ""

    @classmethod
    def parse(cls, url: str) -> Origin:
        """Read an `http://` or `https://` URL; raise ConfigError naming what is wrong."""
        try:
            parts = urlsplit(url.strip())
            port = parts.port
        except ValueError as exc:
            raise ConfigError(f"not a URL: {url!r} ({exc})") from None
        if parts.scheme not in DEFAULT_PORTS:
            raise ConfigError(f"{url!r} must start with http:// or https://")
        if not parts.hostname:
            raise ConfigError(f"{url!r} names no host")
        if parts.username or parts.password or parts.query or parts.fragment:
            raise ConfigError(f"{url!r} may hold only a scheme, host, port and path")
        return cls(
            parts.scheme,
            parts.hostname,
            port or DEFAULT_PORTS[parts.scheme],
            parts.path.rstrip("/"),
        )

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"


def request_head(origin: Origin, path: str, headers: Iterable[tuple[str, str]]) -> bytes:
    """The start line and fixed headers of a POST to `path`, up to its Content-Length."""
    lines = [f"POST {origin.prefix}{path} HTTP/1.1", f"Host: {origin.host_header}"]
    for name, value in headers:
        if "\r" in name + value or "\n" in name + value:
            raise ConfigError(f"header {name} holds a line break")
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\nContent-Length: ").encode("latin-1")


class Pool:
    """Keep-alive connections to one origin, at most `limit` at a time; `async with` closes
    them. `post()` sends one request on an idle connection (or a new one) and reads the reply."""

    def __init__(
        self,
        origin: Origin,
        *,
        limit: int,
        timeout_s: float,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.origin = origin
        self._timeout_s = timeout_s
        self._slots = asyncio.Semaphore(limit)
        self._idle: list[_Connection] = []
        self._open: set[_Connection] = set()
        self._ssl: ssl.SSLContext | None = None
        if origin.scheme == "https":
            self._ssl = ssl_context or ssl.create_default_context()

    async def __aenter__(self) -> Pool:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close every connection; requests in flight end with NoAnswer."""
        for connection in list(self._open):
            connection.abort()
        self._open.clear()
        self._idle.clear()

    @property
    def connections(self) -> int:
        """Connections open now, idle or busy."""
        return len(self._open)

    async def post(self, head: bytes, body: bytes) -> Reply:
        """Send `head` (from `request_head`) with `body`; return the reply, or raise NoAnswer."""
        async with self._slots:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self._timeout_s
            connection = self._reuse() or await self._connect(loop, deadline)
            waiter = connection.send(head, body, loop)
            timer = loop.call_at(deadline, connection.expire)
            try:
                return await waiter
            finally:
                timer.cancel()
                if connection.reusable():
                    self._idle.append(connection)
                else:
                    connection.abort()
                    self._open.discard(connection)

    def _reuse(self) -> _Connection | None:
        idle, now = self._idle, time.monotonic()
        while idle:
            connection = idle.pop()
            if connection.reusable() and now - connection.last_used < IDLE_S:
                return connection
            connection.abort()
            self._open.discard(connection)
        return None

    async def _connect(self, loop: asyncio.AbstractEventLoop, deadline: float) -> _Connection:
        origin = self.origin
        try:
            async with asyncio.timeout_at(deadline):
                _, connection = await loop.create_connection(
                    _Connection,
                    origin.host,
                    origin.port,
                    ssl=self._ssl,
                    server_hostname=origin.host if self._ssl else None,
                )
        except TimeoutError:
            raise NoAnswer("timed out connecting") from None
        except ssl.SSLError as exc:
            raise NoAnswer(f"TLS failed: {exc.reason or type(exc).__name__}") from None
        except OSError as exc:
            raise NoAnswer(f"cannot connect: {exc.strerror or type(exc).__name__}") from None
        self._open.add(connection)
        return connection


class _Connection(asyncio.Protocol):
    """One connection: sends a request, parses its response, says whether it can be reused."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[Reply] | None = None
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunks: list[bytes] = []
        self.headers_done = False
        self.framed = False  # the response says where its body ends (length or chunked)
        self.keep_alive = False
        self.closed = False
        self.last_used = time.monotonic()

    # -- the pool's side ------------------------------------------------------------------------

    def send(
        self, head: bytes, body: bytes, loop: asyncio.AbstractEventLoop
    ) -> asyncio.Future[Reply]:
        assert self.transport is not None and self.waiter is None
        self.waiter = waiter = loop.create_future()
        self.keep_alive = False
        try:
            self.transport.writelines((head, b"%d\r\n\r\n" % len(body), body))
        except (OSError, RuntimeError):  # closed under us (uvloop says so with RuntimeError)
            self._fail("connection closed before the request went")
            self.abort()
        return waiter

    def reusable(self) -> bool:
        transport = self.transport
        closing = transport is None or transport.is_closing()  # closed, not yet told so
        return self.keep_alive and not self.closed and not closing and self.waiter is None

    def expire(self) -> None:
        self._fail("timed out waiting for the answer")
        self.abort()

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    # -- asyncio's side -------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no asyncio.Transport

    def data_received(self, data: bytes) -> None:
        if self.waiter is None:  # nothing was asked: a server speaking out of turn
            self.abort()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(f"unreadable answer: {exc}")
            self.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if exc is None and self.waiter is not None and self.headers_done and not self.framed:
            self.on_message_complete()  # the body ran to a clean end of the connection
        self._fail("connection closed before the answer")

    # -- httptools' callbacks -------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.headers, self.chunks, self.headers_done = [], [], False

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.headers_done = True
        names = {name.lower() for name, _ in self.headers}
        self.framed = b"content-length" in names or b"transfer-encoding" in names
        status = self.parser.get_status_code()
        if status < 200 or status in (204, 304):
            self.framed = True  # no body by definition

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is None or waiter.done():
            return
        status = self.parser.get_status_code()
        if status < 200:  # 100 Continue and the like: the real answer follows
            self.waiter = waiter
            return
        self.keep_alive = self.framed and self.parser.should_keep_alive()
        self.last_used = time.monotonic()
        headers = CIMultiDict(
            (name.decode("latin-1"), value.decode("latin-1")) for name, value in self.headers
        )
        body = b"".join(self.chunks)
        self.headers_done = False
        waiter.set_result(Reply(status, CIMultiDictProxy(headers), body))

    def _fail(self, reason: str) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(NoAnswer(reason))
