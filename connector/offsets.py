"""Which offset is safe to commit: the end of the contiguous prefix of finished records."""

from __future__ import annotations

import itertools
import operator
from collections import deque
from collections.abc import Sequence
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
