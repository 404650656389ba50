"""What the sandbox observed, for tests and benchmarks: answers, objects and the busiest window."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from outgrow_braze_dev.sandbox.contract import ARRAYS, TrackBatch
from outgrow_braze_dev.sandbox.limits import WindowPeak

TRACK_PATH = "/users/track"
PEAK_WINDOW_S = 3.0  # Braze's /users/track burst window (https://www.braze.com/docs/api/api_limits)


class Stats:
    """Counters since start-up or the last reset."""

    def __init__(self) -> None:
        self.track_peak = WindowPeak(PEAK_WINDOW_S)
        self.reset()

    def reset(self) -> None:
        """Start counting afresh."""
        self.requests: dict[str, Counter[str]] = {}
        self.processed: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()
        self.track_peak.reset()

    def arrived(self, path: str) -> None:
        """Note a request to a Braze endpoint as it arrives."""
        if path == TRACK_PATH:
            self.track_peak.add()

    def answered(self, path: str, outcome: int | str) -> None:
        """Count one answer by its status, or `dropped` for a connection cut on purpose."""
        counts = self.requests.get(path)
        if counts is None:
            counts = self.requests[path] = Counter()
        counts[str(outcome)] += 1

    def count_objects(self, batch: TrackBatch) -> None:
        """Count the objects of an applied request, accepted and rejected, by array."""
        for array, count in batch.counts.items():
            self.processed[array] += count
        if batch.errors:
            self.count_rejected(batch.errors)

    def count_rejected(self, errors: Iterable[Mapping[str, Any]]) -> None:
        """Count objects reported in `errors`, by array."""
        for error in errors:
            self.rejected[str(error.get("input_array"))] += 1

    def snapshot(self) -> dict[str, Any]:
        """Everything as JSON-ready values."""
        return {
            "requests": {path: dict(counts) for path, counts in self.requests.items()},
            "objects_processed": {array: self.processed[array] for array in ARRAYS},
            "objects_rejected": {array: self.rejected[array] for array in ARRAYS},
            "max_track_requests_in_3s": self.track_peak.peak,
        }
