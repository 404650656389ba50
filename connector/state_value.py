"""One user's delivery state as bytes: the value of a state record and of a store row.

What Braze confirmed for the user: per attribute the digest of the value and its position (the
raw-topic offset of the record that carried it), and the digests of event de-duplication keys
with the minute each was confirmed.

Format version 1, little-endian, fixed-size entries:
  header     B version (1), H attribute count, H event-key count          (5 bytes)
  attribute  4s name digest, 8s value digest, q position                   (20 bytes each)
  event key  8s key digest, I minutes since the Unix epoch when confirmed  (12 bytes each)
Digests are BLAKE2b digests as they come: 4 bytes of an attribute's name (UTF-8), 8 bytes of its
value as `orjson.dumps(value, option=OPT_SORT_KEYS)`, 8 bytes of `event name + "\\x00" + key`.
Event keys are kept in the order they were confirmed, oldest first. A value not in this format
reads as no state, which is safe: everything is sent again.

The value is read and changed in place, as bytes: a lookup is one search of the entries, in C,
however many event keys a user has gathered.
"""

from __future__ import annotations

import functools
import hashlib
import struct
from collections.abc import Iterator
from typing import Any

import orjson

FORMAT_VERSION = 1
MAX_EVENT_KEYS = 1024  # per user; the oldest are dropped
MAX_ATTRIBUTES = 2048  # per user, the oldest dropped: a value stays below about 53 KB

HEAD = struct.Struct("<BHH")
ATTRIBUTE = struct.Struct("<4s8sq")
EVENT = struct.Struct("<8sI")
POSITION = struct.Struct("<q")
VALUE_POSITION = struct.Struct("<8sq")  # an attribute entry after its name digest
MINUTE = struct.Struct("<I")
SCALARS = frozenset({str, int, float, bool, type(None)})
VALUE_AT = 4  # where the value digest starts in an attribute entry
POSITION_AT = 12  # where the position starts in an attribute entry
MINUTE_AT = 8  # where the minute starts in an event-key entry


@functools.lru_cache(maxsize=32_768)  # a user is screened, then confirmed soon after
def state_key(user_key: str) -> bytes:
    """The user's state key, the state record's Kafka key: 16 bytes of BLAKE2b of the user key."""
    return hashlib.blake2b(user_key.encode("utf-8", "surrogatepass"), digest_size=16).digest()


@functools.lru_cache(maxsize=8_192)
def name_digest(name: object) -> bytes:
    """An attribute name's digest (4 bytes); a name that is not text digests its repr."""
    text = name if isinstance(name, str) else repr(name)
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=4).digest()


def value_digest(value: Any) -> bytes | None:
    """An attribute value's digest (8 bytes), or None for a value JSON cannot express."""
    if type(value) in SCALARS:
        return scalar_digest(value)
    return json_digest(value)


# Small: it is for the values many leads share (scores, segments, answers); the values each lead
# has its own (times, ids) pass through it, and in a larger cache each costs more than it saves.
@functools.lru_cache(maxsize=4_096, typed=True)  # typed: 1, 1.0 and True are different JSON
def scalar_digest(value: str | float | bool | None) -> bytes | None:
    """`value_digest` of a value whose type is one of SCALARS, remembered."""
    return json_digest(value)


def json_digest(value: Any) -> bytes | None:
    """`value_digest` of any value, computed."""
    try:
        text = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except (orjson.JSONEncodeError, RecursionError):  # a key not text, a too-large integer, ...
        return None
    return hashlib.blake2b(text, digest_size=8).digest()


def event_digest(name: object, key: str) -> bytes:
    """An event's de-duplication digest (8 bytes) from its name and key text."""
    text = f"{name}\x00{key}" if isinstance(name, str) else f"{name!r}\x00{key}"
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest()


def readable(value: bytes | None) -> bool:
    """Whether a state value is in the format this module writes."""
    if not value or len(value) < HEAD.size or value[0] != FORMAT_VERSION:
        return False
    _, attributes, events = HEAD.unpack_from(value)
    return bool(len(value) == HEAD.size + attributes * ATTRIBUTE.size + events * EVENT.size)


class StateValue:
    """A user's state value, read and changed in place.

    An attribute is found by its name digest and returned as the index of its entry, -1 when
    absent; an event key as the minute it was confirmed, -1 when absent.
    """

    __slots__ = ("attributes", "data", "events")
    attributes: int  # how many attribute entries
    events: int  # how many event-key entries
    data: bytearray

    def __init__(self, value: bytes | None = None) -> None:
        """Take a state value; None, or bytes not in the format, give an empty state."""
        if value and len(value) >= HEAD.size and value[0] == FORMAT_VERSION:
            _, attributes, events = HEAD.unpack_from(value)
            if len(value) == HEAD.size + attributes * ATTRIBUTE.size + events * EVENT.size:
                self.data = bytearray(value)
                self.attributes, self.events = attributes, events
                return
        self.data = bytearray(HEAD.pack(FORMAT_VERSION, 0, 0))
        self.attributes = self.events = 0

    @property
    def _events_start(self) -> int:
        return HEAD.size + self.attributes * ATTRIBUTE.size

    def attribute(self, name: bytes) -> int:
        """The index of the attribute's entry, or -1."""
        end = HEAD.size + self.attributes * ATTRIBUTE.size
        return _find(self.data, name, HEAD.size, end, ATTRIBUTE.size)

    def position_at(self, index: int) -> int:
        """The position of the attribute entry at `index`."""
        return int(POSITION.unpack_from(self.data, index + POSITION_AT)[0])

    def value_at(self, index: int) -> bytes:
        """The value digest of the attribute entry at `index`."""
        return bytes(self.data[index + VALUE_AT : index + POSITION_AT])

    def holds_value(self, index: int, digest: bytes) -> bool:
        """Whether the attribute entry at `index` has this value digest."""
        return self.data.startswith(digest, index + VALUE_AT)

    def set_attribute(self, name: bytes, digest: bytes | None, position: int) -> None:
        """Record the attribute's value digest and position; a None digest forgets it."""
        index = self.attribute(name)
        if index >= 0:
            self.replace_at(index, digest, position)
        elif digest is not None:
            self.append_attribute(name, digest, position)

    def replace_at(self, index: int, digest: bytes | None, position: int) -> None:
        """Change the attribute entry at `index`; a None digest removes it."""
        if digest is None:
            del self.data[index : index + ATTRIBUTE.size]
            self.attributes -= 1
        else:
            VALUE_POSITION.pack_into(self.data, index + VALUE_AT, digest, position)

    def append_attribute(self, name: bytes, digest: bytes, position: int) -> None:
        """Add an entry for an attribute that has none."""
        end = HEAD.size + self.attributes * ATTRIBUTE.size
        self.data[end:end] = ATTRIBUTE.pack(name, digest, position)
        self.attributes += 1

    def event_minute(self, key: bytes) -> int:
        """The minute the event key was confirmed, or -1."""
        data = self.data
        start = HEAD.size + self.attributes * ATTRIBUTE.size
        index = _find(data, key, start, len(data), EVENT.size)
        return -1 if index < 0 else int(MINUTE.unpack_from(data, index + MINUTE_AT)[0])

    def add_event(self, key: bytes, minute: int) -> None:
        """Record the event key as confirmed at `minute`, as the newest."""
        data = self.data
        index = _find(data, key, self._events_start, len(data), EVENT.size)
        if index >= 0:
            del data[index : index + EVENT.size]
            self.events -= 1
        self.append_event(key, minute)

    def append_event(self, key: bytes, minute: int) -> None:
        """Add an event key that has no entry, as the newest."""
        self.data += EVENT.pack(key, minute)
        self.events += 1

    def encode(self, oldest_minute: int = 0) -> bytes:
        """The value, without event keys confirmed before `oldest_minute`, within the bounds."""
        self._expire(oldest_minute)
        if self.attributes > MAX_ATTRIBUTES:
            self._drop_oldest_attributes()
        HEAD.pack_into(self.data, 0, FORMAT_VERSION, self.attributes, self.events)
        return bytes(self.data)

    def _expire(self, oldest_minute: int) -> None:
        start = self._events_start
        data = self.data
        drop = max(0, self.events - MAX_EVENT_KEYS)  # keys are kept oldest first
        while drop < self.events:
            at = start + drop * EVENT.size + MINUTE_AT
            if MINUTE.unpack_from(data, at)[0] >= oldest_minute:
                break
            drop += 1
        if drop:
            del data[start : start + drop * EVENT.size]
            self.events -= drop

    def _drop_oldest_attributes(self) -> None:
        entries = sorted(self.attribute_entries(), key=lambda entry: entry[2])
        kept = entries[-MAX_ATTRIBUTES:]
        events = bytes(self.data[self._events_start :])
        self.data = bytearray(HEAD.pack(FORMAT_VERSION, len(kept), self.events))
        self.data += b"".join(ATTRIBUTE.pack(*entry) for entry in kept) + events
        self.attributes = len(kept)

    def attribute_entries(self) -> Iterator[tuple[bytes, bytes, int]]:
        """Every attribute entry: (name digest, value digest, position)."""
        end = self._events_start
        return ATTRIBUTE.iter_unpack(self.data[HEAD.size : end])

    def event_entries(self) -> Iterator[tuple[bytes, int]]:
        """Every event key entry, oldest first: (key digest, minute)."""
        return EVENT.iter_unpack(self.data[self._events_start :])


def _find(data: bytearray, needle: bytes, start: int, end: int, size: int) -> int:
    """The index of the entry that starts with `needle`, among `size`-byte entries from start."""
    index = data.find(needle, start, end)
    while index >= 0 and (index - start) % size:  # a match across entries is no match
        index = data.find(needle, index + 1, end)
    return index
