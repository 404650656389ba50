"""The local delivery-state store: partitions held from load to drop, tombstones delete."""

from __future__ import annotations

from pathlib import Path

import pytest

from connector.state_store import FILE_NAME, StateStore, row_id


def key(n: int) -> bytes:
    return n.to_bytes(8, "big") + b"\xee" * 8


def test_a_loaded_partition_answers_by_key_and_others_find_nothing() -> None:
    with StateStore.open(None, 4) as store:
        store.load(3, [(key(1), b"one"), (key(2), b"two")])
        assert store.get(3, key(1)) == b"one"
        assert store.get(3, key(9)) is None
        assert store.get(4, key(1)) is None
        assert store.count(3) == 2
        assert store.partitions == [3]


def test_the_last_value_of_a_key_wins_and_a_tombstone_deletes() -> None:
    with StateStore.open(None, 4) as store:
        store.load(0, [(key(1), b"a"), (key(1), b"b"), (key(2), b"x"), (key(2), None)])
        assert store.get(0, key(1)) == b"b"
        assert store.get(0, key(2)) is None
        store.apply(0, [(key(1), None), (key(1), b"c")])
        assert store.get(0, key(1)) == b"c"
        store.put(0, [(key(3), b"d"), (key(3), b"e")])
        assert store.get(0, key(3)) == b"e"
        assert store.count(0) == 2


def test_a_dropped_partition_forgets_its_users_and_ignores_late_puts() -> None:
    with StateStore.open(None, 4) as store:
        store.load(1, [(key(1), b"a")])
        store.drop(1)
        store.put(1, [(key(2), b"late")])
        store.apply(1, [(key(2), b"late")])
        assert not store.holds(1)
        assert store.get(1, key(2)) is None
        assert store.count(1) == 0
        store.load(1)
        assert store.get(1, key(1)) is None


def test_loading_again_replaces_the_partition_and_changes_the_generation() -> None:
    with StateStore.open(None, 4) as store:
        store.load(2, [(key(1), b"a"), (key(2), b"b")])
        before = store.generation
        store.load(2, [(key(3), b"c")])
        assert store.generation != before
        assert [store.get(2, key(n)) for n in (1, 2, 3)] == [None, None, b"c"]


def test_keys_differing_after_their_first_eight_bytes_are_one_row() -> None:
    assert row_id(b"\x00" * 7 + b"\x01" + b"a" * 8) == row_id(b"\x00" * 7 + b"\x01" + b"b" * 8) == 1
    assert row_id(b"\xff" * 16) == -1


def test_a_temporary_store_is_removed_on_close() -> None:
    store = StateStore.open(None, 4)
    store.load(0, [(key(1), b"a" * 10_000)])
    assert store.size_bytes() > 10_000
    store.close()
    assert not store.path.exists()
    assert not store.path.parent.exists()


def test_a_directory_store_starts_empty_even_over_an_old_file(tmp_path: Path) -> None:
    with StateStore.open(str(tmp_path / "state"), 4) as store:
        store.load(0, [(key(1), b"a")])
    assert (tmp_path / "state" / FILE_NAME).exists()
    with StateStore.open(str(tmp_path / "state"), 4) as store:
        assert store.partitions == []
        store.load(0)
        assert store.get(0, key(1)) is None


def test_a_partition_number_must_be_one() -> None:
    with StateStore.open(None, 4) as store, pytest.raises(ValueError, match="partition"):
        store.load(-1)


def test_a_value_read_before_it_was_put_is_read_anew() -> None:
    with StateStore.open(None, 4) as store:
        store.load(0)
        assert store.get(0, key(1)) is None
        store.put(0, [(key(1), b"a")])
        assert store.get(0, key(1)) == b"a"
        store.load(0, [(key(1), b"restored")])
        assert store.get(0, key(1)) == b"restored"


def test_values_put_reach_the_file_when_more_users_are_put_than_are_kept_in_memory() -> None:
    users = 40_000  # more than the store keeps in its dict of recent values
    with StateStore.open(None, 4) as store:
        store.load(0)
        store.load(1)
        store.put(1, [(key(0), b"other partition")])
        for start in range(0, users, 1000):
            store.put(0, [(key(n), n.to_bytes(4, "big")) for n in range(start, start + 1000)])
        store.put(0, [(key(5), b"changed")])
        assert store.count(0) == users
        assert store.count(1) == 1
        assert [store.get(0, key(n)) for n in (0, 5, 6, users - 1)] == [
            b"\x00\x00\x00\x00",
            b"changed",
            (6).to_bytes(4, "big"),
            (users - 1).to_bytes(4, "big"),
        ]
        store.drop(1)
        store.load(1)
        assert store.get(1, key(0)) is None


def test_a_value_put_is_read_back_after_the_partition_is_restored_with_more() -> None:
    with StateStore.open(None, 4) as store:
        store.load(0)
        store.put(0, [(key(1), b"put")])
        store.apply(0, [(key(2), b"restored")])
        assert (store.get(0, key(1)), store.get(0, key(2)), store.count(0)) == (
            b"put",
            b"restored",
            2,
        )
