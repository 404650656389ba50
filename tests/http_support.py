"""Real HTTP servers on loopback for the clients' tests: an aiohttp one, a raw socket one that
answers the odd ways servers do, a forward proxy that counts what it passed, a certificate."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Answer = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

# Hop-by-hop headers end at the proxy (RFC 9110, 7.6.1); aiohttp frames the rest itself.
_NOT_FORWARDED = frozenset(
    ("connection", "keep-alive", "proxy-authorization", "proxy-connection", "te", "trailer",
     "transfer-encoding", "upgrade", "content-length", "host")
)  # fmt: skip


@asynccontextmanager
async def serving(
    app: web.Application, ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[int]:
    """Serve `app` on a free loopback port; yield the port."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context).start()
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


@asynccontextmanager
async def aiohttp_server(
    handler: Handler, ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[tuple[str, list[web.Request]]]:
    """A server answering every path with `handler`; yields its base URL and the requests seen,
    each with the client port it came from as `remote`."""
    seen: list[web.Request] = []

    async def recording(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        seen.append(request.clone(remote=str(request.transport.get_extra_info("peername")[1])))
        return await handler(request)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", recording)
    async with serving(app, ssl_context) as port:
        host = "localhost" if ssl_context else "127.0.0.1"
        yield f"{'https' if ssl_context else 'http'}://{host}:{port}", seen


@asynccontextmanager
async def raw_server(answer: Answer) -> AsyncIterator[str]:
    """A socket server that reads one request and lets `answer` write what it likes."""

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
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()


@dataclass
class ForwardProxy:
    """What a forward proxy passed on: the absolute-form targets, in order, and the
    Proxy-Authorization each came with."""

    url: str = ""
    targets: list[str] = field(default_factory=list)
    logins: list[str | None] = field(default_factory=list)


@asynccontextmanager
async def forward_proxy() -> AsyncIterator[ForwardProxy]:
    """An HTTP forward proxy on loopback: takes absolute-form requests (`POST http://host/path`),
    sends them on to their origin and returns the origin's answer. Anything else gets 400."""
    proxy = ForwardProxy()

    async def forward(request: web.Request) -> web.StreamResponse:
        target = request.raw_path
        if not target.startswith("http://"):
            return web.Response(status=400, text="a forward proxy takes absolute-form requests")
        proxy.targets.append(target)
        proxy.logins.append(request.headers.get("Proxy-Authorization"))
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _NOT_FORWARDED}
        body = await request.read()
        async with origin.request(request.method, target, headers=headers, data=body) as answer:
            passed = {k: v for k, v in answer.headers.items() if k.lower() not in _NOT_FORWARDED}
            return web.Response(status=answer.status, headers=passed, body=await answer.read())

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forward)
    # Its own way out ignores the proxy variables, which the test sets to this proxy.
    async with aiohttp.ClientSession(trust_env=False, auto_decompress=False) as origin:
        async with serving(app) as port:
            proxy.url = f"http://127.0.0.1:{port}"
            yield proxy


@dataclass
class TunnelProxy:
    """What a tunnelling proxy could read: the head of each CONNECT request, in order."""

    url: str = ""
    heads: list[bytes] = field(default_factory=list)


@asynccontextmanager
async def tunnel_proxy() -> AsyncIterator[TunnelProxy]:
    """A proxy on loopback taking `CONNECT host:port`, as HTTPS goes through a forward proxy:
    it answers 200 and then passes bytes both ways, unread. Anything else gets 405."""
    proxy = TunnelProxy()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            proxy.heads.append(head)
            method, target, _ = head.split(b"\r\n", 1)[0].split(b" ")
            if method != b"CONNECT":
                writer.write(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
                return
            host, port = target.decode().rsplit(":", 1)
            origin_reader, origin_writer = await asyncio.open_connection(host, int(port))
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await asyncio.gather(_pipe(reader, origin_writer), _pipe(origin_reader, writer))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    proxy.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        yield proxy
    finally:
        server.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65_536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


def make_certificate(root: Path) -> Path:
    """A self-signed certificate for `localhost` in `root` (cert.pem, key.pem); returns root."""
    if shutil.which("openssl") is None:
        raise RuntimeError("the openssl command makes the test certificate")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-noenc", "-keyout", "key.pem", "-out", "cert.pem", "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost"],
        cwd=root, check=True, capture_output=True,
    )  # fmt: skip
    return root


def serving_context(certificate: Path) -> ssl.SSLContext:
    """A server TLS context with the certificate of `make_certificate`."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificate / "cert.pem", certificate / "key.pem")
    return context
