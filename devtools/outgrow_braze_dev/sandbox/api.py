"""The Braze endpoints: fault, key, budget, media type, size, JSON, then the endpoint's rules.

Statuses and messages follow https://www.braze.com/docs/api/errors; every answer carries the
rate-limit headers of https://www.braze.com/docs/api/api_limits.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import orjson
from aiohttp import web

from outgrow_braze_dev.sandbox import keys
from outgrow_braze_dev.sandbox.contract import check_track
from outgrow_braze_dev.sandbox.errors import Refusal
from outgrow_braze_dev.sandbox.export import export, parse_export
from outgrow_braze_dev.sandbox.faults import Decision
from outgrow_braze_dev.sandbox.limits import Verdict, WindowLimiter
from outgrow_braze_dev.sandbox.state import STATE, SandboxState

# Braze's literal messages (https://www.braze.com/docs/api/errors).
PARSE_ERROR = "Error while parsing request body. Please check your syntax."
ACCESS_DENIED = "Access Denied"
RATE_LIMITED = "Rate Limited"
SLOW_BODY_CHUNKS = 8


@dataclass(frozen=True)
class Endpoint:
    """One Braze endpoint: its path, the permission it needs, its budget and its rules."""

    path: str
    permission: str
    limiter: Callable[[SandboxState], WindowLimiter]
    answer: Callable[[SandboxState, Any], dict[str, Any]]


def _track(state: SandboxState, document: Any) -> dict[str, Any]:
    try:
        batch = check_track(document, state.config.object_limit)
    except Refusal as refusal:
        state.stats.count_rejected(refusal.errors)
        raise
    state.store.apply(batch)
    state.stats.count_objects(batch)
    return batch.response_body()


def _export(state: SandboxState, document: Any) -> dict[str, Any]:
    return export(state.store, parse_export(document))


TRACK = Endpoint("/users/track", keys.TRACK, lambda s: s.track_limiter, _track)
EXPORT_IDS = Endpoint("/users/export/ids", keys.EXPORT_IDS, lambda s: s.export_limiter, _export)


def handler(endpoint: Endpoint) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The aiohttp handler of one endpoint."""
    path, permission, pick_limiter, answer = (
        endpoint.path,
        endpoint.permission,
        endpoint.limiter,
        endpoint.answer,
    )

    async def handle(request: web.Request) -> web.StreamResponse:
        state = request.app[STATE]
        state.stats.arrived(path)
        decision = state.faults.decide()
        if decision.delay_s:
            await asyncio.sleep(decision.delay_s)
        limiter = pick_limiter(state)
        if decision.action != "none":
            return await _inject(request, state, path, decision, limiter)
        verdict: Verdict | None = None
        try:
            _authorize(request, state, permission)
            verdict = limiter.take()
            if not verdict.allowed:
                raise Refusal(429, RATE_LIMITED)
            status, body = 201, answer(state, await _read_json(request, state))
        except Refusal as refusal:
            status, body = refusal.status, refusal.body()
        # A request refused before the budget was asked (no or wrong key) does not spend it.
        headers = (verdict or limiter.peek()).headers()
        state.stats.answered(path, status)
        return await _respond(request, status, body, headers, decision.slow_body_s)

    handle.__doc__ = f"Answer POST {path} the way Braze does."
    return handle


def _authorize(request: web.Request, state: SandboxState, permission: str) -> None:
    presented = keys.bearer_token(request.headers.get("Authorization"))
    granted = state.config.keyring.permissions(presented)
    if granted is None:
        # Braze echoes the key it refused (the connector's notes on the errors page); the
        # connector must redact it, and this lets its tests prove that.
        raise Refusal(401, f"Invalid API key: {presented}" if presented else "Invalid API key")
    if not keys.allows(granted, permission):
        raise Refusal(403, ACCESS_DENIED)


async def _read_json(request: web.Request, state: SandboxState) -> Any:
    media_type = request.headers.get("Content-Type", "").partition(";")[0].strip().lower()
    if media_type != "application/json":
        raise Refusal(415, "Unsupported Media Type: send Content-Type application/json")
    limit = state.config.max_body_bytes
    too_large = Refusal(413, "Request Entity Too Large")
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise too_large from None
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise Refusal(400, PARSE_ERROR) from None


async def _inject(
    request: web.Request,
    state: SandboxState,
    path: str,
    decision: Decision,
    limiter: WindowLimiter,
) -> web.StreamResponse:
    if decision.action == "drop":
        state.stats.answered(path, "dropped")
        if request.transport is not None:
            request.transport.abort()
        return web.Response(status=503)  # never delivered: the connection is gone
    verdict = limiter.peek()
    if decision.action == "storm":
        # During a storm the budget looks spent until the storm is over.
        reset = math.ceil(time.time() + decision.until_s)
        verdict = Verdict(False, verdict.limit, 0, max(reset, verdict.reset_epoch_s))
        body = {"message": RATE_LIMITED}
    else:
        body = {"message": HTTPStatus(decision.status).phrase}
    state.stats.answered(path, decision.status)
    return await _respond(request, decision.status, body, verdict.headers(), decision.slow_body_s)


_JSON = "application/json"


async def _respond(
    request: web.Request,
    status: int,
    body: dict[str, Any],
    headers: dict[str, str],
    slow_body_s: float,
) -> web.StreamResponse:
    payload = orjson.dumps(body)
    headers["Content-Type"] = _JSON
    if not slow_body_s:
        return web.Response(body=payload, status=status, headers=headers)
    return await _trickle(request, status, payload, headers, slow_body_s)


async def _trickle(
    request: web.Request, status: int, payload: bytes, headers: dict[str, str], seconds: float
) -> web.StreamResponse:
    """Send the headers at once and the body in pieces spread over `seconds`."""
    response = web.StreamResponse(status=status, headers=headers)
    response.content_length = len(payload)
    await response.prepare(request)
    step = max(1, -(-len(payload) // SLOW_BODY_CHUNKS))
    for start in range(0, len(payload), step):
        await asyncio.sleep(seconds / SLOW_BODY_CHUNKS)
        await response.write(payload[start : start + step])
    await response.write_eof()
    return response
