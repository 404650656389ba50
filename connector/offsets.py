"""Which offset is safe to commit: the end of the contiguous prefix of finished records."""

from __future__ import annotations

import itertools
import operator
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field


@dataclass
class PartitionOffsets:
    """Track records of one partition from fetch to finish; finishes may come in any order."""

    _pending: deque[int] = field(default_factory=deque)
    _unfinished: set[int] = field(default_factory=set)
    _finished: set[int] = field(default_factory=set)
    _next: int | None = None  # offset after the last record handed out
    _committed: int | None = None

    def track(self, offset: int) -> None:
        """Note a fetched record; offsets of one partition arrive in increasing order."""
        if self._next is not None and offset < self._next:
            raise ValueError(f"offset {offset} arrived after {self._next - 1}")
        self._pending.append(offset)
        self._unfinished.add(offset)
        self._next = offset + 1

    def track_all(self, offsets: Sequence[int]) -> None:
        """Note fetched records at once: `track()` for each, in C loops."""
        if not offsets:
            return
        start = offsets[0]
        if (self._next is not None and start < self._next) or not all(
            map(operator.lt, offsets, itertools.islice(offsets, 1, None))
        ):
            for offset in offsets:  # find and report the first out of order, as track() does
                self.track(offset)
        self._pending.extend(offsets)
        self._unfinished.update(offsets)
        self._next = offsets[-1] + 1

    def finish(self, offset: int) -> None:
        """Note a record delivered, dead-lettered or filtered."""
        unfinished = self._unfinished
        if offset not in unfinished:
            raise ValueError(f"offset {offset} is not pending")
        unfinished.remove(offset)
        pending = self._pending
        if pending[0] != offset:  # an earlier record is still out: wait for it
            self._finished.add(offset)
            return
        pending.popleft()
        finished = self._finished
        while pending and pending[0] in finished:
            finished.remove(pending.popleft())

    @property
    def in_flight(self) -> int:
        """Records fetched and not finished yet."""
        return len(self._unfinished)

    def safe_offset(self) -> int | None:
        """The offset to commit (the next record to read after a restart), or None if none yet."""
        if self._pending:
            return self._pending[0]
        return self._next

    def to_commit(self) -> int | None:
        """The safe offset if it moved since the last commit, else None."""
        offset = self.safe_offset()
        if offset is None or offset == self._committed:
            return None
        return offset

    def committed(self, offset: int) -> None:
        """Remember what Kafka now has for this partition."""
        self._committed = offset


class Trackers:
    """The offset trackers of the partitions a pipeline holds, by partition.

    A record's item names the tracker it was taken under (`owner`): once its partition is
    revoked, or revoked and assigned again, the record is no longer this pipeline's to finish
    for the partition's new tracker, nor to dead-letter.
    """

    def __init__(self) -> None:
        self.by_partition: dict[int, PartitionOffsets] = {}
        self.dropped: dict[int, int] = {}  # queued records of partitions being revoked

    def __contains__(self, partition: int) -> bool:
        return partition in self.by_partition

    def get(self, partition: int) -> PartitionOffsets | None:
        return self.by_partition.get(partition)

    def of(self, partition: int) -> PartitionOffsets:
        """The partition's tracker, made on its first record."""
        tracker = self.by_partition.get(partition)
        if tracker is None:
            tracker = self.by_partition[partition] = PartitionOffsets()
        return tracker

    def owns(self, partition: int, owner: object) -> bool:
        """Whether `owner` still tracks the partition for this pipeline."""
        return self.by_partition.get(partition) is owner

    def pending(self) -> int:
        """Records fetched and not finished, over every partition."""
        return sum(tracker.in_flight for tracker in self.by_partition.values())

    def busy(self, partitions: set[int] | None) -> bool:
        """Whether records of the partitions (all when None) are unfinished, dropped ones aside."""
        dropped = self.dropped
        return any(
            tracker.in_flight > dropped.get(partition, 0)
            for partition, tracker in self.by_partition.items()
            if partitions is None or partition in partitions
        )

    def to_commit(self, partitions: Iterable[int] | None = None) -> dict[int, int]:
        """The offsets that moved since their last commit, of every (or the given) partition."""
        chosen = self.by_partition if partitions is None else set(partitions)
        offsets = {}
        for partition in chosen:
            tracker = self.by_partition.get(partition)
            offset = tracker.to_commit() if tracker is not None else None
            if offset is not None:
                offsets[partition] = offset
        return offsets

    def committed(self, offsets: dict[int, int]) -> None:
        """Kafka now has these offsets."""
        for partition, offset in offsets.items():
            tracker = self.by_partition.get(partition)  # revoked while the commit was sent
            if tracker is not None:
                tracker.committed(offset)

    def positions(self) -> dict[int, int]:
        """Per partition, the offset a restart would read next (its safe offset)."""
        found = {}
        for partition, tracker in self.by_partition.items():
            safe = tracker.safe_offset()
            if safe is not None:
                found[partition] = safe
        return found

    def forget(self, partitions: Iterable[int]) -> None:
        for partition in partitions:
            self.by_partition.pop(partition, None)
