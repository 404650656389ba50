"""A small HTTP load generator for the local benchmarks, run as its own process.

    python -m outgrow_braze_dev.loadgen --url URL --duration S --connections N --body-file F

It posts the bodies of F (one per line, JSON Lines, cycled in order) to URL from N concurrent
workers over N kept-alive connections, until S seconds have passed or `--max-requests` posts have
been sent, whichever comes first, then prints ONE JSON line on stdout: requests, non_2xx (count by
status), errors, duration_s, rps and latency percentiles in milliseconds. Posts still unanswered
`--timeout` seconds after the end are cut off and counted as errors, so it always stops by itself.

It only ever targets this machine: a URL whose host is not `localhost` or a loopback address
(127.0.0.0/8, ::1) is refused. It is kept cheap per request (uvloop, pre-encoded bodies, no
cookie jar, latencies in a preallocated array) so that it is not the bottleneck when it shares
two cores with the server under test and its Kafka broker.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import math
import sys
import time
from array import array
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from yarl import URL

# No machine can post more than this many requests a second through one Python process, so
# `duration * MAX_RATE` bounds the run when no `--max-requests` is given.
MAX_RATE = 100_000
DEFAULT_TIMEOUT_S = 10.0
PERCENTILES = (50.0, 90.0, 99.0)


class NotLoopback(ValueError):
    """The URL points somewhere other than this machine."""


def check_loopback(url: str) -> str:
    """Return `url` if it is an http(s) URL on localhost or a loopback address, else raise."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise NotLoopback(f"refusing {url!r}: only http:// or https:// URLs can be load-tested")
    host = (parts.hostname or "").lower()
    if not _is_loopback_host(host):
        raise NotLoopback(
            f"refusing to load-test host {host or '(none)'!r}: the load generator only targets "
            "this machine (localhost, 127.0.0.0/8 or ::1)"
        )
    return url


def _is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def percentile(sorted_values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of already sorted values; 0.0 for no values."""
    if not sorted_values:
        return 0.0
    rank = math.ceil(pct / 100.0 * len(sorted_values))
    return sorted_values[min(max(rank, 1), len(sorted_values)) - 1]


def read_bodies(path: Path) -> list[bytes]:
    """Read request bodies, one per non-blank line, already encoded."""
    bodies = [line.strip() for line in path.read_bytes().splitlines()]
    bodies = [body for body in bodies if body]
    if not bodies:
        raise ValueError(f"{path} holds no request body (one body per line expected)")
    return bodies


@dataclass
class Tally:
    """What the workers share: the request budget, latencies so far and the failures."""

    capacity: int
    latencies: array[float]
    started: int = 0
    answered: int = 0
    non_2xx: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)

    @classmethod
    def for_capacity(cls, capacity: int) -> Tally:
        """Preallocate room for `capacity` latencies."""
        return cls(capacity, array("d", bytes(8 * capacity)))

    def record(self, seconds: float, status: int) -> None:
        """Store one answer's latency and note its status if it is not 2xx."""
        self.latencies[self.answered] = seconds
        self.answered += 1
        if not 200 <= status < 300:
            self.non_2xx[status] += 1


@dataclass(frozen=True)
class Load:
    """One run's parameters."""

    url: str
    duration_s: float
    connections: int
    max_requests: int
    bodies: list[bytes]
    content_type: str = "application/json"
    timeout_s: float = DEFAULT_TIMEOUT_S


async def worker(session: aiohttp.ClientSession, load: Load, tally: Tally, deadline: float) -> None:
    """Post bodies one after another until the time or the request budget runs out."""
    clock = time.perf_counter
    url = URL(load.url, encoded=True)
    headers = {"Content-Type": load.content_type}
    bodies = load.bodies
    count = len(bodies)
    while tally.started < tally.capacity and clock() < deadline:
        body = bodies[tally.started % count]
        tally.started += 1
        begin = clock()
        try:
            async with session.post(url, data=body, headers=headers) as response:
                await response.read()
                status = response.status
        except (aiohttp.ClientError, OSError) as exc:
            tally.errors[type(exc).__name__] += 1
            continue
        tally.record(clock() - begin, status)


def new_session(load: Load, headers: Mapping[str, str] | None = None) -> aiohttp.ClientSession:
    """A client session with as little per-request work as aiohttp allows, sending `headers`
    with every post."""
    connector = aiohttp.TCPConnector(limit=load.connections, limit_per_host=0, ttl_dns_cache=None)
    # No per-request timer (it costs a loop.call_at per post): run_load bounds the whole run.
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=load.timeout_s)
    return aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),
        timeout=timeout,
        auto_decompress=False,
        skip_auto_headers=("User-Agent",),
        headers=headers,
    )


async def run_load(load: Load, headers: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Run the load and return its summary.

    Posts still unanswered `timeout_s` after the end of the run are cut off and counted as
    errors, so the run ends by itself even if the server stops answering.
    """
    tally = Tally.for_capacity(load.max_requests)
    async with new_session(load, headers) as session:
        started = time.perf_counter()
        deadline = started + load.duration_s
        workers = [worker(session, load, tally, deadline) for _ in range(load.connections)]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*workers), load.duration_s + load.timeout_s)
        elapsed = time.perf_counter() - started
    cut_off = tally.started - tally.answered - sum(tally.errors.values())
    if cut_off:
        tally.errors["Unanswered"] += cut_off
    return summarize(tally, elapsed)


def summarize(tally: Tally, elapsed_s: float) -> dict[str, Any]:
    """Turn the tally into the one-line report."""
    latencies = sorted(tally.latencies[: tally.answered])
    summary: dict[str, Any] = {
        "requests": tally.answered,
        "non_2xx": {str(status): n for status, n in sorted(tally.non_2xx.items())},
        "errors": sum(tally.errors.values()),
        "error_types": dict(tally.errors),
        "duration_s": round(elapsed_s, 3),
        "rps": round(tally.answered / elapsed_s, 1) if elapsed_s > 0 else 0.0,
    }
    for pct in PERCENTILES:
        summary[f"p{pct:g}_ms"] = round(percentile(latencies, pct) * 1000.0, 3)
    summary["max_ms"] = round(latencies[-1] * 1000.0, 3) if latencies else 0.0
    return summary


def positive_float(text: str) -> float:
    """An argparse type: a finite number above zero."""
    value = float(text)
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least one."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """Describe the command line."""
    parser = argparse.ArgumentParser(
        prog="python -m outgrow_braze_dev.loadgen",
        description="Post request bodies to a URL on this machine and print one JSON summary.",
    )
    parser.add_argument("--url", required=True, help="target URL (localhost or loopback only)")
    parser.add_argument("--duration", type=positive_float, required=True, help="seconds to run")
    parser.add_argument("--connections", type=positive_int, default=64, help="concurrency")
    parser.add_argument(
        "--max-requests",
        type=positive_int,
        default=None,
        help=f"stop after this many posts (default: duration x {MAX_RATE:,})",
    )
    parser.add_argument(
        "--body-file", type=Path, required=True, help="request bodies, one per line"
    )
    parser.add_argument("--content-type", default="application/json", help="Content-Type sent")
    parser.add_argument(
        "--timeout",
        type=positive_float,
        default=DEFAULT_TIMEOUT_S,
        help="seconds to wait for the last answers after the run, and per connect",
    )
    return parser


def load_from_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> Load:
    """Parse and check the command line; refusals exit with status 2 and a clear message."""
    args = parser.parse_args(argv)
    try:
        url = check_loopback(args.url)
        bodies = read_bodies(args.body_file)
    except (OSError, ValueError) as exc:
        parser.error(str(exc))
    limit = math.ceil(args.duration * MAX_RATE)
    return Load(
        url=url,
        duration_s=args.duration,
        connections=args.connections,
        max_requests=min(args.max_requests or limit, limit),
        bodies=bodies,
        content_type=args.content_type,
        timeout_s=args.timeout,
    )


def run(load: Load, headers: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Run the load on uvloop (where it exists) and return its summary."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is absent only on unsupported platforms
        return asyncio.run(run_load(load, headers))
    result: dict[str, Any] = uvloop.run(run_load(load, headers))
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """Run one bounded load and print its summary as one JSON line."""
    load = load_from_args(build_parser(), argv)
    summary = run(load)
    sys.stdout.write(json.dumps(summary, separators=(",", ":")) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
