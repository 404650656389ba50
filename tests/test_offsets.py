"""The offset tracker never commits past a record that is not finished."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector.offsets import PartitionOffsets, Trackers


def tracker(*offsets: int) -> PartitionOffsets:
    part = PartitionOffsets()
    for offset in offsets:
        part.track(offset)
    return part


def test_nothing_tracked_means_nothing_to_commit() -> None:
    assert PartitionOffsets().to_commit() is None


def test_out_of_order_finishes_wait_for_the_gap() -> None:
    part = tracker(10, 11, 12, 13)
    assert part.to_commit() == 10
    part.finish(12)
    part.finish(11)
    assert part.safe_offset() == 10
    part.finish(10)
    assert part.safe_offset() == 13
    part.finish(13)
    assert part.safe_offset() == 14
    assert part.in_flight == 0


def test_compacted_gaps_in_offsets_are_fine() -> None:
    part = tracker(3, 7, 20)
    part.finish(7)
    part.finish(3)
    assert part.safe_offset() == 20
    part.finish(20)
    assert part.safe_offset() == 21


def test_to_commit_reports_only_progress() -> None:
    part = tracker(0, 1)
    part.finish(0)
    assert part.to_commit() == 1
    part.committed(1)
    assert part.to_commit() is None
    part.finish(1)
    assert part.to_commit() == 2


def test_misuse_is_refused() -> None:
    part = tracker(5)
    with pytest.raises(ValueError, match="not pending"):
        part.finish(6)
    with pytest.raises(ValueError, match="arrived after"):
        part.track(4)


@given(st.lists(st.integers(0, 3), min_size=1, max_size=60), st.randoms())
def test_safe_offset_is_the_lowest_unfinished(gaps: list[int], rnd: object) -> None:
    offsets, at = [], 0
    for gap in gaps:
        at += gap + 1
        offsets.append(at)
    part = tracker(*offsets)
    order = list(offsets)
    rnd.shuffle(order)  # type: ignore[attr-defined]
    finished: set[int] = set()
    for offset in order:
        part.finish(offset)
        finished.add(offset)
        unfinished = [o for o in offsets if o not in finished]
        expected = unfinished[0] if unfinished else offsets[-1] + 1
        assert part.safe_offset() == expected
        assert part.in_flight == len(unfinished)


@given(st.lists(st.lists(st.integers(0, 40), max_size=8), max_size=6))
def test_tracking_a_chunk_at_once_is_tracking_each_record(chunks: list[list[int]]) -> None:
    """Chunks of any offsets, in or out of order: the same state, or the same refusal."""
    one_by_one, at_once = PartitionOffsets(), PartitionOffsets()
    for chunk in chunks:
        try:
            for offset in chunk:
                one_by_one.track(offset)
        except ValueError as exc:
            with pytest.raises(ValueError, match=str(exc)):
                at_once.track_all(chunk)
            break
        at_once.track_all(chunk)
        assert vars(at_once) == vars(one_by_one)
    for offset in list(one_by_one._unfinished)[::2]:
        one_by_one.finish(offset)
        at_once.finish(offset)
    assert vars(at_once) == vars(one_by_one)


def test_trackers_count_what_is_pending_and_commit_what_moved() -> None:
    trackers = Trackers()
    for offset in range(5):
        trackers.of(0).track(offset)
    trackers.of(1).track(10)
    assert (trackers.pending(), 0 in trackers, 2 in trackers) == (6, True, False)
    for offset in (0, 1, 3):
        trackers.of(0).finish(offset)
    assert trackers.to_commit() == {0: 2, 1: 10}
    assert trackers.to_commit([1, 7]) == {1: 10}  # a partition it holds no tracker for: none
    trackers.committed({0: 2, 7: 4})  # one revoked while its commit was sent is passed over
    assert trackers.to_commit() == {1: 10}
    assert trackers.positions() == {0: 2, 1: 10}


def test_trackers_tell_busy_partitions_apart_from_dropped_records() -> None:
    trackers = Trackers()
    for offset in range(3):
        trackers.of(4).track(offset)
    assert trackers.busy({4}) and trackers.busy(None) and not trackers.busy({5})
    trackers.dropped = {4: 3}  # all three were queued and dropped by a revoke
    assert not trackers.busy({4})
    owner = trackers.of(4)
    assert trackers.owns(4, owner)
    trackers.forget([4])
    assert not trackers.owns(4, owner) and trackers.get(4) is None
    assert trackers.of(4) is not owner  # assigned again: a new tracker
