"""The worker's local copy of the delivery state: one SQLite table per raw partition.

The state topic is the record; this store is a cache of it that the worker rebuilds whenever a
partition is assigned, so nothing here needs to survive a crash: no journal, no fsync. SQLite
keeps at most `cache_mb` of it in memory and the rest in its file, which bounds the worker's
memory however many users a partition holds. The values used lately are kept in a dict in front
of it, and values put stay there until the dict is full: a user who submits again soon is read
and rewritten there, and SQLite is written once for many of those puts.

A row is `(user INTEGER PRIMARY KEY, state BLOB)`: the user is the first 8 bytes of the
16-byte state key read as a signed big-endian integer (SQLite's row id, its fastest key), the
state is the state record's value, byte for byte.
"""

from __future__ import annotations

import contextlib
import sqlite3
import struct
import tempfile
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

FILE_NAME = "delivery-state.sqlite3"

_ROW_ID = struct.Struct(">q")
_RECENT = 32_768  # values kept in a dict as well: re-submissions and retries come close together


def row_id(key: bytes) -> int:
    """The SQLite row id of a state key: its first 8 bytes as a signed big-endian integer."""
    return int(_ROW_ID.unpack_from(key)[0])


class StateStore:
    """Each held partition's users and their state values, in one SQLite file.

    A partition is held from `load` until `drop`; `get` of a partition not held finds nothing
    and `put` to it changes nothing, so a late answer for a revoked partition cannot bring its
    table back. Use from one thread (the event loop's).
    """

    def __init__(self, path: Path, temporary: tempfile.TemporaryDirectory[str] | None) -> None:
        self.path = path
        self._temporary = temporary
        self._db = sqlite3.connect(path, isolation_level=None)
        self._reader = self._db.cursor()  # one cursor for every get: cheaper than a new one each
        # What was put or got lately, by (partition, row id): a get from it skips SQLite and
        # its releasing and taking back of the GIL. Emptied when full, and on load and drop.
        self._recent: dict[tuple[int, int], bytes | None] = {}
        # What was put since SQLite was last written, per partition (all of it in _recent too):
        # written when _recent is emptied, and before the table is counted.
        self._unwritten: dict[int, dict[int, bytes]] = {}
        self._select: dict[int, str] = {}
        self._upsert: dict[int, str] = {}
        self._delete: dict[int, str] = {}
        self.generation = 0  # counts loads and drops: what was read before may be gone

    @classmethod
    def open(cls, directory: str | None, cache_mb: int) -> StateStore:
        """Open a new, empty store in `directory` (None: a temporary directory, removed on close).

        A file left by an earlier process is removed: its tables are rebuilt from the topic.
        """
        temporary = None
        if directory is None:
            temporary = tempfile.TemporaryDirectory(prefix="outgrow-braze-state-")
            directory = temporary.name
        path = Path(directory) / FILE_NAME
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        store = cls(path, temporary)
        store._configure(cache_mb)
        return store

    def _configure(self, cache_mb: int) -> None:
        # A cache to rebuild from the topic: speed over durability, and nobody else opens it.
        for pragma in (
            "journal_mode = OFF",
            "synchronous = OFF",
            "locking_mode = EXCLUSIVE",
            f"cache_size = -{int(cache_mb) * 1024}",
            "temp_store = FILE",
        ):
            self._db.execute(f"PRAGMA {pragma}")

    def close(self) -> None:
        """Close the file (and remove the temporary directory, if it is one)."""
        self._db.close()
        if self._temporary is not None:
            self._temporary.cleanup()

    def __enter__(self) -> StateStore:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def holds(self, partition: int) -> bool:
        """Whether the partition's table is loaded (and not dropped since)."""
        return partition in self._select

    @property
    def partitions(self) -> list[int]:
        """The partitions held, in order."""
        return sorted(self._select)

    def get(self, partition: int, key: bytes) -> bytes | None:
        """Return a user's state value by state key, or None (no state, or partition not held)."""
        recent = (partition, _ROW_ID.unpack_from(key)[0])
        if recent in self._recent:
            return self._recent[recent]
        sql = self._select.get(partition)
        if sql is None:
            return None
        row = self._reader.execute(sql, recent[1:]).fetchone()
        value = None if row is None else row[0]
        self._remember(recent, value)
        return value

    def put(self, partition: int, rows: Iterable[tuple[bytes, bytes]]) -> None:
        """Set users' state values by state key, in order. Ignored for a partition not held."""
        if partition not in self._upsert:
            return
        rows = list(rows)
        if len(self._recent) + len(rows) > _RECENT:
            self._forget_recent()
        recent, unwritten = self._recent, self._unwritten.setdefault(partition, {})
        for key, value in rows:
            user = _ROW_ID.unpack_from(key)[0]
            recent[partition, user] = value
            unwritten[user] = value

    def _remember(self, recent: tuple[int, int], value: bytes | None) -> None:
        if len(self._recent) >= _RECENT:
            self._forget_recent()
        self._recent[recent] = value

    def _write(self) -> None:
        """Write what was put since the last time to SQLite."""
        for partition, rows in self._unwritten.items():
            self._db.executemany(self._upsert[partition], rows.items())
        self._unwritten = {}

    def _forget_recent(self) -> None:
        self._write()
        self._recent.clear()

    def apply(self, partition: int, rows: Iterable[tuple[bytes, bytes | None]]) -> None:
        """Apply state records in order, as compaction would: a None value (a tombstone) deletes.

        Ignored for a partition not held.
        """
        if partition not in self._upsert:
            return
        self._forget_recent()  # a restore's puts: none of them is recent use
        latest: dict[int, bytes | None] = {}
        for key, value in rows:  # the last value of a key wins
            latest[_ROW_ID.unpack_from(key)[0]] = value
        kept = [(user, value) for user, value in latest.items() if value is not None]
        gone = [(user,) for user, value in latest.items() if value is None]
        if kept:
            self._db.executemany(self._upsert[partition], kept)
        if gone:
            self._db.executemany(self._delete[partition], gone)

    def load(self, partition: int, rows: Iterable[tuple[bytes, bytes | None]] = ()) -> None:
        """Hold the partition with only these rows: its table emptied, then `apply`."""
        self.drop(partition)  # counts as a change of generation
        table = _table(partition)
        self._db.execute(f"CREATE TABLE {table} (user INTEGER PRIMARY KEY, state BLOB NOT NULL)")
        self._select[partition] = f"SELECT state FROM {table} WHERE user = ?"  # noqa: S608
        self._upsert[partition] = (
            f"INSERT INTO {table} (user, state) VALUES (?, ?)"  # noqa: S608
            " ON CONFLICT (user) DO UPDATE SET state = excluded.state"
        )
        self._delete[partition] = f"DELETE FROM {table} WHERE user = ?"  # noqa: S608
        self.apply(partition, rows)

    def drop(self, partition: int) -> None:
        """Stop holding the partition and forget its users."""
        self.generation += 1
        self._unwritten.pop(partition, None)
        self._forget_recent()
        self._select.pop(partition, None)
        self._upsert.pop(partition, None)
        self._delete.pop(partition, None)
        self._db.execute(f"DROP TABLE IF EXISTS {_table(partition)}")

    def count(self, partition: int) -> int:
        """How many users of the partition have state (0 if not held). Scans the table."""
        if partition not in self._select:
            return 0
        self._write()
        sql = f"SELECT count(*) FROM {_table(partition)}"  # noqa: S608
        return int(self._db.execute(sql).fetchone()[0])

    def size_bytes(self) -> int:
        """The store file's size on disk."""
        with contextlib.suppress(FileNotFoundError):
            return self.path.stat().st_size
        return 0


def _table(partition: int) -> str:
    if not isinstance(partition, int) or partition < 0:  # it becomes part of SQL text
        raise ValueError(f"not a partition number: {partition!r}")
    return f"p{partition}"
