"""The built-in load generator with a Braze API key: `python -m connector.dev.sandbox.load`.

It takes `connector.dev.loadgen`'s options plus `--api-key`, sends every post with
`Authorization: Bearer <key>`, and prints the same one-line JSON summary. Like loadgen it only
targets this machine and stops by itself after `--duration` or `--max-requests`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

import aiohttp

from connector.dev import loadgen


def new_session(load: loadgen.Load, api_key: str) -> aiohttp.ClientSession:
    """A cheap client session (as loadgen's) that sends the key with every request."""
    connector = aiohttp.TCPConnector(limit=load.connections, limit_per_host=0, ttl_dns_cache=None)
    return aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=load.timeout_s),
        auto_decompress=False,
        skip_auto_headers=("User-Agent",),
        headers={"Authorization": f"Bearer {api_key}"},
    )


async def run_load(load: loadgen.Load, api_key: str) -> dict[str, Any]:
    """Run the load with the key; posts unanswered `timeout_s` after the end count as errors."""
    tally = loadgen.Tally.for_capacity(load.max_requests)
    async with new_session(load, api_key) as session:
        started = time.perf_counter()
        deadline = started + load.duration_s
        workers = [loadgen.worker(session, load, tally, deadline) for _ in range(load.connections)]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*workers), load.duration_s + load.timeout_s)
        elapsed = time.perf_counter() - started
    cut_off = tally.started - tally.answered - sum(tally.errors.values())
    if cut_off:
        tally.errors["Unanswered"] += cut_off
    return loadgen.summarize(tally, elapsed)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one bounded, authenticated load and print its summary as one JSON line."""
    parser = loadgen.build_parser()
    parser.prog = "python -m connector.dev.sandbox.load"
    parser.add_argument("--api-key", required=True, help="the sandbox key to send")
    load = loadgen.load_from_args(parser, argv)
    api_key: str = parser.parse_args(argv).api_key
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is absent only on unsupported platforms
        summary = asyncio.run(run_load(load, api_key))
    else:
        summary = uvloop.run(run_load(load, api_key))
    sys.stdout.write(json.dumps(summary, separators=(",", ":")) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
