"""`python -m outgrow_braze_dev.batching_bench`: CPU µs per record to queue and pack mapped leads.

Maps `--events` bench leads of `--users` people once (outgrow_braze_dev.mapping_bench.records);
then, `--runs` times, queues them all in a `UserQueue` and takes requests `--in-flight` at a
time, encoding each body, listing its records and releasing its users, as the worker does.
Prints the median CPU time per record of that loop alone.
"""

from __future__ import annotations

import argparse
import statistics
import time

from connector.batching import Item, Limits, UserQueue
from connector.intake import map_source
from connector.mapping import BrazeUpdate, load_mapping
from outgrow_braze_dev.loadgen import positive_int
from outgrow_braze_dev.mapping_bench import records


def items(count: int, users: int = 20_000) -> list[Item]:
    """Mapped bench leads as the worker queues them, one partition, in offset order."""
    mapping = load_mapping()
    found = []
    for record in records(count, users=users):
        update = map_source(mapping, record)
        assert isinstance(update, BrazeUpdate)  # bench leads are never filtered
        found.append(Item(record.partition, record.offset, update))
    return found


def pack_all(batch: list[Item], in_flight: int, limits: Limits) -> int:
    """Queue every record, then take, send and release requests until none is left; count them."""
    queue = UserQueue()
    for one in batch:
        queue.add(one)
    sent = 0
    while queue:
        packed = queue.take(in_flight, limits)
        for request in packed.requests:
            request.encoded()
            request.items()
            sent += 1
        for request in packed.requests:
            queue.release(request.users)
    return sent


def cpu_us_per_record(batch: list[Item], in_flight: int, limits: Limits) -> float:
    """Pack every record once; return the CPU µs spent per record."""
    started = time.process_time()
    pack_all(batch, in_flight, limits)
    return (time.process_time() - started) / len(batch) * 1e6


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=positive_int, default=20_000)
    parser.add_argument("--runs", type=positive_int, default=7)
    parser.add_argument("--users", type=positive_int, default=20_000)
    parser.add_argument("--in-flight", type=positive_int, default=8)
    args = parser.parse_args(argv)
    batch, limits = items(args.events, args.users), Limits()
    cpu_us_per_record(batch[:1_000], args.in_flight, limits)  # warm caches
    runs = [cpu_us_per_record(batch, args.in_flight, limits) for _ in range(args.runs)]
    print(f"queue and pack: {statistics.median(runs):.2f} CPU µs/record (runs: {len(runs)})")


if __name__ == "__main__":
    main()
