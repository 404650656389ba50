"""The sandbox's own endpoints under `/_sandbox/`, and the page at `/`: no key needed."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from outgrow_braze_dev.sandbox import page
from outgrow_braze_dev.sandbox.faults import InvalidFaults
from outgrow_braze_dev.sandbox.state import STATE

PAGE_PROFILES = 50


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=orjson.dumps(body), status=status, headers={"Content-Type": "application/json"}
    )


async def stats(request: web.Request) -> web.Response:
    """Answers by endpoint and status, objects processed, the busiest 3 s, profiles held."""
    state = request.app[STATE]
    return _json({**state.stats.snapshot(), "profiles": len(state.store)})


async def reset(request: web.Request) -> web.Response:
    """Forget profiles and counters, refill the budgets and restore the start-up faults."""
    request.app[STATE].reset()
    return _json({"message": "reset"})


async def show_faults(request: web.Request) -> web.Response:
    """The faults in force."""
    return _json(request.app[STATE].faults.describe())


async def set_faults(request: web.Request) -> web.Response:
    """Change the given fault settings; the others stay as they are."""
    faults = request.app[STATE].faults
    try:
        faults.configure(orjson.loads(await request.read()))
    except orjson.JSONDecodeError:
        return _json({"message": "send the faults as a JSON object"}, 400)
    except InvalidFaults as exc:
        return _json({"message": str(exc)}, 400)
    return _json(faults.describe())


async def clear_faults(request: web.Request) -> web.Response:
    """Stop injecting faults."""
    faults = request.app[STATE].faults
    faults.clear()
    return _json(faults.describe())


async def home(request: web.Request) -> web.Response:
    """The page a person opens to see profiles arrive."""
    state = request.app[STATE]
    html = page.render(state.store.recently_updated(PAGE_PROFILES), len(state.store))
    return web.Response(text=html, content_type="text/html")


async def not_found(request: web.Request) -> web.Response:
    """Any other path: 404 (a trailing slash included), or 405 for a known path."""
    known = request.app.get(KNOWN_PATHS, frozenset())
    if request.path in known:
        return _json({"message": "Method Not Allowed"}, 405)
    return _json({"message": "Not Found"}, 404)


KNOWN_PATHS = web.AppKey("known_paths", frozenset)


def add_routes(app: web.Application) -> None:
    """Register the admin endpoints and the page."""
    app.router.add_get("/", home)
    app.router.add_get("/_sandbox/stats", stats)
    app.router.add_post("/_sandbox/reset", reset)
    app.router.add_get("/_sandbox/faults", show_faults)
    app.router.add_post("/_sandbox/faults", set_faults)
    app.router.add_delete("/_sandbox/faults", clear_faults)
