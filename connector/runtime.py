"""Process settings for long-running services."""

from __future__ import annotations

import gc

RECEIVER_YOUNG_OBJECTS = 10_000
# The worker holds up to WORKER_MAX_PENDING_RECORDS records, each a few dozen objects, for the
# length of a Braze round trip: with the receiver's threshold a young collection ran every couple
# of hundred records and walked objects that were all still alive (an eighth of its CPU time).
# Past this many, records have mostly finished and been freed by reference counting first.
WORKER_YOUNG_OBJECTS = 100_000


def tune_gc(young_objects: int = RECEIVER_YOUNG_OBJECTS) -> None:
    """Move start-up objects out of the collector's way and collect young objects less often.

    A full collection over everything imported pauses a service for tens of milliseconds; under
    load that happened every few seconds and set the p99 latency. `young_objects` more container
    objects alive than at the last collection start the next one; cycles, which reference
    counting cannot free, wait for it, so it also bounds the garbage kept (a few MiB at most).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(young_objects, 20, 20)
