"""The sandbox server: its aiohttp application and its start/stop lifecycle.

async with running(settings) as base_url: ...      # in-process, for tests and benchmarks
await serve(settings)                                # until SIGINT/SIGTERM (or `stop`)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from types import TracebackType

from aiohttp import web

from connector.runtime import tune_gc
from connector.signals import stop_on_signals
from outgrow_braze_dev.sandbox import admin, api
from outgrow_braze_dev.sandbox.state import STATE, SandboxConfig, SandboxState
from outgrow_braze_dev.settings import SandboxSettings

log = logging.getLogger(__name__)

BRAZE_ENDPOINTS = (api.TRACK, api.EXPORT_IDS)
SHUTDOWN_TIMEOUT_S = 2.0
_WILDCARD_HOSTS = {"", "0.0.0.0", "::"}
# The sandbox keeps every profile it made: collections that came every few hundred objects walked
# them again and again (about 6 % of its CPU under the worker benchmark).
YOUNG_OBJECTS = 100_000


def create_app(state: SandboxState) -> web.Application:
    """Build the aiohttp application around the sandbox's state."""
    # No middleware: every Braze answer is built by its handler, which keeps requests cheap.
    app = web.Application(client_max_size=state.config.max_body_bytes)
    app[STATE] = state
    for endpoint in BRAZE_ENDPOINTS:
        app.router.add_post(endpoint.path, api.handler(endpoint))
    admin.add_routes(app)
    app[admin.KNOWN_PATHS] = frozenset(resource.canonical for resource in app.router.resources())
    app.router.add_route("*", "/{tail:.*}", admin.not_found)
    return app


class Sandbox:
    """A running sandbox: the shared state and the HTTP server, started and stopped together."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.state = SandboxState(config)
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    async def start(self) -> str:
        """Listen on the configured address; return the base URL clients should use."""
        runner = web.AppRunner(
            create_app(self.state),
            access_log=None,
            handle_signals=False,
            shutdown_timeout=SHUTDOWN_TIMEOUT_S,
        )
        await runner.setup()
        self._runner = runner
        site = web.TCPSite(runner, self.config.host, self.config.port, backlog=1024)
        try:
            await site.start()
        except OSError:
            await self.stop()
            raise
        self.base_url = _base_url(self.config.host, runner.addresses[0][1])
        return self.base_url

    async def stop(self) -> None:
        """Stop listening and close every connection."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> Sandbox:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()


def _base_url(host: str, port: int) -> str:
    if host in _WILDCARD_HOSTS:
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


@asynccontextmanager
async def running(settings: SandboxSettings) -> AsyncIterator[str]:
    """Run a sandbox in this event loop for the duration of the block; yield its base URL."""
    async with Sandbox(SandboxConfig.from_settings(settings)) as sandbox:
        yield sandbox.base_url


async def serve(
    settings: SandboxSettings,
    stop: asyncio.Event | None = None,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Run the sandbox until SIGTERM/SIGINT (or `stop`); call `ready` with its URL once up."""
    config = SandboxConfig.from_settings(settings)
    stop = stop or stop_on_signals()
    tune_gc(YOUNG_OBJECTS)
    async with Sandbox(config) as sandbox:
        log.info("sandbox listening", extra={"url": sandbox.base_url})
        if ready is not None:
            ready(sandbox.base_url)
        await stop.wait()
    log.info("sandbox stopped")
