"""What Braze confirmed for each user, and the decision what of a user's records to send.

A user's state is the digest and position (raw-topic offset) of the value Braze last confirmed
for each attribute, and the digests of the event de-duplication keys Braze confirmed lately.
Screening leaves out what Braze already has; confirming records what Braze accepted. Both
happen only for records whose user keys to the partition they were read from (the guard):
only then is this worker the one that sees all of the user's records.

The value format (version 1, little-endian), the same bytes in the state topic and the store:
  header     B version, H attribute count, H event-key count
  attribute  I name digest, Q value digest, q position          (20 bytes each)
  event key  Q key digest, I minutes since the epoch confirmed  (12 bytes each)
Digests are BLAKE2b: 4 bytes of an attribute's name, 8 bytes of its value as
`orjson.dumps(value, option=OPT_SORT_KEYS)`, 8 bytes of `event name + "\\x00" + key`; each
read as an unsigned little-endian integer.
"""

from __future__ import annotations

import functools
import hashlib
import struct
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import orjson

from connector.batching import Item
from connector.mapping_results import BrazeUpdate
from connector.producer import partition_of
from connector.state_store import StateStore

FORMAT_VERSION = 1
MAX_EVENT_KEYS = 1024  # per user; the oldest are dropped
MAX_ATTRIBUTES = 2048  # per user; keeps a value (about 53 KB at most) far below a record's limit

_HEAD = struct.Struct("<BHH")
_ATTRIBUTE = struct.Struct("<IQq")
_EVENT = struct.Struct("<QI")
_SCALARS = frozenset({str, int, float, bool, type(None)})

Records = dict[int, list[tuple[bytes, bytes]]]  # per raw partition: (state key, value)


@functools.lru_cache(maxsize=131_072)
def state_key(user_key: str) -> bytes:
    """The user's state key: the state record's Kafka key (BLAKE2b, 16 bytes of the user key)."""
    return hashlib.blake2b(user_key.encode("utf-8", "surrogatepass"), digest_size=16).digest()


@functools.lru_cache(maxsize=8_192)
def name_digest(name: object) -> int:
    """An attribute name's digest (4 bytes)."""
    text = name if isinstance(name, str) else repr(name)
    return _digest(text.encode("utf-8", "surrogatepass"), 4)


def value_digest(value: Any) -> int | None:
    """An attribute value's digest (8 bytes), or None for a value that has none (never equal)."""
    if type(value) in _SCALARS:
        return _scalar_digest(value)
    return _json_digest(value)


@functools.lru_cache(maxsize=65_536, typed=True)  # typed: 1, 1.0 and True differ in JSON
def _scalar_digest(value: str | float | bool | None) -> int | None:
    return _json_digest(value)


def _json_digest(value: Any) -> int | None:
    try:
        text = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except (orjson.JSONEncodeError, RecursionError):  # a key not a string, a too-large integer
        return None
    return _digest(text, 8)


@functools.lru_cache(maxsize=65_536)
def event_digest(name: object, key: str) -> int:
    """An event's de-duplication digest (8 bytes) from its name and key text."""
    text = f"{name}\x00{key}" if isinstance(name, str) else f"{name!r}\x00{key}"
    return _digest(text.encode("utf-8", "surrogatepass"), 8)


def _digest(data: bytes, size: int) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=size).digest(), "little")


@dataclass(slots=True)
class UserState:
    """One user's state, decoded: attributes by name digest, event keys by key digest."""

    attributes: dict[int, tuple[int, int]] = field(default_factory=dict)  # (value, position)
    events: dict[int, int] = field(default_factory=dict)  # minutes since the epoch

    @classmethod
    def decode(cls, value: bytes | None) -> UserState:
        """Read a state value; None, or bytes not in the format, give an empty state.

        An empty state is the safe reading: everything is sent again.
        """
        if not readable(value):
            return cls()
        assert value is not None
        attributes = _HEAD.unpack_from(value)[1]
        start = _HEAD.size
        middle = start + attributes * _ATTRIBUTE.size
        view = memoryview(value)
        return cls(
            {name: (digest, at) for name, digest, at in _ATTRIBUTE.iter_unpack(view[start:middle])},
            dict(_EVENT.iter_unpack(view[middle:])),
        )

    def encode(self) -> bytes:
        """Write the state value (bounded: see MAX_ATTRIBUTES and MAX_EVENT_KEYS)."""
        attributes = _newest(self.attributes, MAX_ATTRIBUTES, lambda entry: entry[1][1])
        events = _newest(self.events, MAX_EVENT_KEYS, lambda entry: entry[1])
        parts = [_HEAD.pack(FORMAT_VERSION, len(attributes), len(events))]
        parts += [_ATTRIBUTE.pack(name, *entry) for name, entry in attributes.items()]
        parts += [_EVENT.pack(key, minutes) for key, minutes in events.items()]
        return b"".join(parts)

    def expire(self, oldest_minute: int) -> None:
        """Forget event keys confirmed before `oldest_minute`."""
        if any(minutes < oldest_minute for minutes in self.events.values()):
            self.events = {k: m for k, m in self.events.items() if m >= oldest_minute}


def readable(value: bytes | None) -> bool:
    """Whether a state value is in the format this module writes."""
    if value is None or len(value) < _HEAD.size or value[0] != FORMAT_VERSION:
        return False
    _, attributes, events = _HEAD.unpack_from(value)
    size: int = _HEAD.size + attributes * _ATTRIBUTE.size + events * _EVENT.size
    return len(value) == size


def _newest(entries: dict[int, Any], limit: int, age: Callable[[Any], int]) -> dict[int, Any]:
    if len(entries) <= limit:
        return entries
    return dict(sorted(entries.items(), key=age)[-limit:])


@dataclass(slots=True)
class Screened:
    """What screening one user's records gave."""

    kept: list[Item] = field(default_factory=list)  # to send, narrowed where something was left out
    skipped: list[Item] = field(default_factory=list)  # as they came; nothing left: finish them
    events_skipped: int = 0
    attributes_skipped_unchanged: int = 0
    attributes_skipped_history: int = 0
    unguarded: int = 0  # sent in full: their user keys to another partition


class DeliveryState:
    """Screens a user's records against the store and records what Braze confirmed."""

    def __init__(
        self,
        store: StateStore,
        *,
        window_days: float,
        clock: Callable[[], float] = time.time,
        resend: bool = False,
    ) -> None:
        self.store = store
        self._window_minutes = int(window_days * 24 * 60)
        self._clock = clock
        self._resend = resend

    def _minute(self) -> int:
        return int(self._clock() // 60)

    def screen(self, user_key: str, items: list[Item], partitions: int) -> Screened:
        """Decide what of one user's waiting records (in offset order) still needs sending.

        Reads the store once; changes nothing. `partitions` is the raw topic's partition count.
        """
        screened = Screened()
        home = partition_of(user_key.encode("utf-8", "surrogatepass"), partitions)
        run: _Run | None = None
        for item in items:
            if item.partition != home:
                screened.unguarded += 1
                screened.kept.append(item)
            elif self._resend:
                (screened.kept if _has_content(item) else screened.skipped).append(item)
            else:
                if run is None:
                    run = self._run(item.partition, user_key)
                run.screen(item, screened)
        return screened

    def _run(self, partition: int, user_key: str) -> _Run:
        state = UserState.decode(self.store.get(partition, state_key(user_key)))
        return _Run(state, self._minute() - self._window_minutes)

    def confirm(self, items: list[Item], partitions: int) -> Records:
        """Record what Braze accepted of these items (each with its update as sent).

        Updates the store and returns, per raw partition, the state records to produce. Items
        whose user keys elsewhere, and partitions the store does not hold, change nothing.
        """
        users: dict[str, list[Item]] = {}
        for item in items:
            user_key = item.update.user_key
            key = user_key.encode("utf-8", "surrogatepass")
            if partition_of(key, partitions) == item.partition and self.store.holds(item.partition):
                users.setdefault(user_key, []).append(item)
        now = self._minute()
        records: Records = {}
        for user_key, mine in users.items():
            partition = mine[0].partition
            key = state_key(user_key)
            before = self.store.get(partition, key)
            state = UserState.decode(before)
            for item in sorted(mine, key=_offset):
                _record(state, item, now)
            state.expire(now - self._window_minutes)
            value = state.encode()
            if value != before:
                records.setdefault(partition, []).append((key, value))
        for partition, rows in records.items():
            self.store.put(partition, rows)
        return records


class _Run:
    """Screening of one user's records: the state as it will be once the kept ones are sent."""

    __slots__ = ("attributes", "events", "oldest_minute")

    def __init__(self, state: UserState, oldest_minute: int) -> None:
        self.attributes: dict[int, tuple[int | None, int]] = state.attributes  # type: ignore[assignment]
        self.events = state.events
        self.oldest_minute = oldest_minute

    def screen(self, item: Item, screened: Screened) -> None:
        update = cast(BrazeUpdate, item.update)
        attributes = self._attributes(update.attributes, item.offset, screened)
        events, keys = self._events(update.events, update.event_keys, screened)
        if attributes is None and events is None:
            screened.kept.append(item)
        elif attributes is None or events is None:
            narrowed = BrazeUpdate(
                update.user_key,
                update.identity,
                update.attributes if attributes is None else attributes,
                update.events if events is None else events,
                update.event_keys if keys is None else keys,
            )
            _add(screened, item, narrowed)
        else:
            narrowed = BrazeUpdate(update.user_key, update.identity, attributes, events, keys)
            _add(screened, item, narrowed)

    def _attributes(
        self, attributes: Mapping[str, Any], offset: int, screened: Screened
    ) -> dict[str, Any] | None:
        """The attributes to send, or None when all of them are."""
        kept: dict[str, Any] = {}
        instructions: dict[str, Any] = {}
        confirmed = self.attributes
        for name, value in attributes.items():
            if isinstance(name, str) and name[:1] == "_":  # an instruction, not data
                instructions[name] = value
                continue
            digest = name_digest(name)
            known = confirmed.get(digest)
            if known is None:
                confirmed[digest] = (value_digest(value), offset)
            elif known[1] >= offset:
                screened.attributes_skipped_history += 1
                continue
            else:
                new = value_digest(value)
                if new is not None and new == known[0]:
                    screened.attributes_skipped_unchanged += 1
                    continue
                confirmed[digest] = (new, offset)
            kept[name] = value
        if len(kept) + len(instructions) == len(attributes):
            return None if kept or not instructions else {}
        return kept | instructions if kept else {}

    def _events(
        self, events: Sequence[Mapping[str, Any]], keys: Sequence[str | None], screened: Screened
    ) -> tuple[tuple[Mapping[str, Any], ...] | None, tuple[str | None, ...] | None]:
        """The events to send with their keys, or (None, None) when all of them are."""
        kept: list[int] = []
        delivered = self.events
        for index, key in enumerate(keys):
            if key is not None:
                digest = event_digest(_event_name(events[index]), key)
                if delivered.get(digest, -1) >= self.oldest_minute:
                    screened.events_skipped += 1
                    continue
                delivered[digest] = self.oldest_minute  # counts as delivered from now on
            kept.append(index)
        if len(kept) == len(events):
            return None, None
        return tuple(events[i] for i in kept), tuple(keys[i] for i in kept)


def _event_name(event: Mapping[str, Any]) -> object:
    return event.get("name") if isinstance(event, Mapping) else None


def _add(screened: Screened, item: Item, narrowed: BrazeUpdate) -> None:
    """Keep the item with what is left of it, or skip it (as it came) if nothing is."""
    if narrowed.empty:
        screened.skipped.append(item)
    else:
        screened.kept.append(item._replace(update=narrowed))


def _has_content(item: Item) -> bool:
    update = item.update
    return update.attribute_payload is not None or bool(update.event_payloads)


def _offset(item: Item) -> int:
    return item.offset


def _record(state: UserState, item: Item, now: int) -> None:
    """Fold what Braze accepted of one record into the user's state."""
    update = cast(BrazeUpdate, item.update)
    attributes = state.attributes
    for name, value in update.attributes.items():
        if isinstance(name, str) and name[:1] == "_":
            continue
        digest = name_digest(name)
        new = value_digest(value)
        if new is None:  # nothing to compare a later value with: it will be sent
            attributes.pop(digest, None)
        else:
            attributes[digest] = (new, item.offset)
    for event, key in zip(update.events, update.event_keys, strict=True):
        if key is not None:
            state.events[event_digest(_event_name(event), key)] = now
