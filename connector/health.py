"""A small HTTP server for probes and metrics: /healthz, /readyz and /metrics."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from connector.metrics import CONTENT_TYPE_LATEST

ReadyCheck = Callable[[], Awaitable[str | None]]  # None when ready, else the reason


def health_app(ready: ReadyCheck, render_metrics: Callable[[], bytes]) -> web.Application:
    """Build the probe application around a readiness check and a metrics renderer."""

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(request: web.Request) -> web.Response:
        reason = await ready()
        if reason:
            return web.json_response({"status": "not_ready", "reason": reason}, status=503)
        return web.json_response({"status": "ready"})

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=render_metrics(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app


async def start_health(app: web.Application, host: str, port: int) -> web.AppRunner:
    """Serve the probe application; the caller cleans the runner up."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
