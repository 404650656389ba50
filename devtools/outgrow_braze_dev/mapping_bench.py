"""`python -m outgrow_braze_dev.mapping_bench`: CPU µs per record to map bench leads.

Maps `--events` leads (outgrow_braze_dev.bench.lead, as JSON bytes with the receiver's headers)
through `map_source`, as the worker does, `--runs` times; prints the median CPU time per record.
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import UTC, datetime

import orjson

from connector.deadletter import SourceRecord
from connector.intake import map_source
from connector.mapping import Mapping, load_mapping
from outgrow_braze_dev.bench import USERS, lead
from outgrow_braze_dev.loadgen import positive_int

RECEIVED_AT_MS = 1_741_944_000_000


def records(count: int, *, fresh_times: bool = False, users: int = USERS) -> list[SourceRecord]:
    """Raw records as the receiver writes them, one per bench lead (of `users` people).

    Bench leads repeat their `created_at` every hour of leads; `fresh_times` gives each its own,
    as real leads have.
    """
    headers = (
        ("content-type", b"application/json"),
        ("received-at", str(RECEIVED_AT_MS).encode()),
        ("source", b"default"),
        ("event-id", b"bench"),
    )
    return [
        SourceRecord(
            "outgrow.raw", 0, n, RECEIVED_AT_MS, None, _body(n, fresh_times, users), headers
        )
        for n in range(count)
    ]


def _body(index: int, fresh_time: bool, users: int) -> bytes:
    body = lead(index, users)
    if fresh_time:
        body["created_at"] = _time(RECEIVED_AT_MS - index)
    return orjson.dumps(body)


def _time(epoch_ms: int) -> str:
    moment = datetime.fromtimestamp(epoch_ms / 1000, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def cpu_us_per_record(mapping: Mapping, batch: list[SourceRecord]) -> float:
    """Map every record once; return the CPU µs spent per record."""
    started = time.process_time()
    for record in batch:
        map_source(mapping, record)
    return (time.process_time() - started) / len(batch) * 1e6


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=positive_int, default=20_000)
    parser.add_argument("--runs", type=positive_int, default=7)
    parser.add_argument("--fresh-times", action="store_true", help="a created_at per lead")
    args = parser.parse_args(argv)
    mapping, batch = load_mapping(), records(args.events, fresh_times=args.fresh_times)
    cpu_us_per_record(mapping, batch[:1_000])  # warm caches
    runs = [cpu_us_per_record(mapping, batch) for _ in range(args.runs)]
    print(f"map_source: {statistics.median(runs):.2f} CPU µs/record (runs: {len(runs)})")


if __name__ == "__main__":
    main()
