"""One user's delivery state as bytes: the value of a state record and of a store row.

What Braze confirmed for the user: per attribute the digest of the value and its position (the
raw-topic offset of the record that carried it), and the digests of event de-duplication keys
with the minute each was confirmed.

Format version 1, little-endian, fixed-size entries:
  header     B version (1), H attribute count, H event-key count          (5 bytes)
  attribute  I name digest, Q value digest, q position                     (20 bytes each)
  event key  Q key digest, I minutes since the Unix epoch when confirmed   (12 bytes each)
Digests are BLAKE2b read as unsigned little-endian integers: 4 bytes of an attribute's name
(UTF-8), 8 bytes of its value as `orjson.dumps(value, option=OPT_SORT_KEYS)`, 8 bytes of
`event name + "\\x00" + key text`. A value that is not in this format reads as no state, which
is safe: everything is sent again.
"""

from __future__ import annotations

import functools
import hashlib
import struct
from dataclasses import dataclass, field
from typing import Any

import orjson

FORMAT_VERSION = 1
MAX_EVENT_KEYS = 1024  # per user; the oldest are dropped
MAX_ATTRIBUTES = 2048  # per user, the oldest dropped: a value stays below about 53 KB

_HEAD = struct.Struct("<BHH")
_SCALARS = frozenset({str, int, float, bool, type(None)})


@functools.lru_cache(maxsize=131_072)
def state_key(user_key: str) -> bytes:
    """The user's state key, the state record's Kafka key: 16 bytes of BLAKE2b of the user key."""
    return hashlib.blake2b(user_key.encode("utf-8", "surrogatepass"), digest_size=16).digest()


@functools.lru_cache(maxsize=8_192)
def name_digest(name: object) -> int:
    """An attribute name's digest (4 bytes); a name that is not text digests its repr."""
    text = name if isinstance(name, str) else repr(name)
    return _digest(text.encode("utf-8", "surrogatepass"), 4)


def value_digest(value: Any) -> int | None:
    """An attribute value's digest (8 bytes), or None for a value JSON cannot express."""
    if type(value) in _SCALARS:
        return _scalar_digest(value)
    return _json_digest(value)


@functools.lru_cache(maxsize=65_536, typed=True)  # typed: 1, 1.0 and True are different JSON
def _scalar_digest(value: str | float | bool | None) -> int | None:
    return _json_digest(value)


def _json_digest(value: Any) -> int | None:
    try:
        text = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except (orjson.JSONEncodeError, RecursionError):  # a key not text, a too-large integer, ...
        return None
    return _digest(text, 8)


@functools.lru_cache(maxsize=65_536)
def event_digest(name: object, key: str) -> int:
    """An event's de-duplication digest (8 bytes) from its name and key text."""
    text = f"{name}\x00{key}" if isinstance(name, str) else f"{name!r}\x00{key}"
    return _digest(text.encode("utf-8", "surrogatepass"), 8)


def _digest(data: bytes, size: int) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=size).digest(), "little")


@functools.lru_cache(maxsize=1_024)
def _layout(attributes: int, events: int) -> struct.Struct:
    return struct.Struct("<BHH" + "IQq" * attributes + "QI" * events)


@dataclass(slots=True)
class UserState:
    """One user's state, decoded: attributes by name digest, event keys by key digest.

    An attribute's value digest may be None while screening (a value without a digest that is
    about to be sent); such an entry is not written.
    """

    attributes: dict[int, tuple[int | None, int]] = field(default_factory=dict)  # value, position
    events: dict[int, int] = field(default_factory=dict)  # minutes since the epoch

    @classmethod
    def decode(cls, value: bytes | None) -> UserState:
        """Read a state value; None, or bytes not in the format, give an empty state."""
        if not value or value[0] != FORMAT_VERSION or len(value) < _HEAD.size:
            return cls()
        _, attributes, events = _HEAD.unpack_from(value)
        layout = _layout(attributes, events)
        if layout.size != len(value):
            return cls()
        flat = layout.unpack(value)
        end = 3 + 3 * attributes
        return cls(
            dict(zip(flat[3:end:3], zip(flat[4:end:3], flat[5:end:3], strict=True), strict=True)),
            dict(zip(flat[end::2], flat[end + 1 :: 2], strict=True)),
        )

    def encode(self, oldest_minute: int = 0) -> bytes:
        """Write the state value without event keys confirmed before `oldest_minute`.

        Bounded: at most MAX_ATTRIBUTES attributes and MAX_EVENT_KEYS keys, the newest.
        """
        flat: list[int] = []
        attributes = 0
        for name, (digest, position) in _newest_attributes(self.attributes).items():
            if digest is not None:
                flat += (name, digest, position)
                attributes += 1
        events = 0
        for key, minute in _newest_events(self.events).items():
            if minute >= oldest_minute:
                flat += (key, minute)
                events += 1
        return _layout(attributes, events).pack(FORMAT_VERSION, attributes, events, *flat)


def readable(value: bytes | None) -> bool:
    """Whether a state value is in the format this module writes."""
    if not value or value[0] != FORMAT_VERSION or len(value) < _HEAD.size:
        return False
    _, attributes, events = _HEAD.unpack_from(value)
    return bool(_layout(attributes, events).size == len(value))


def _newest_attributes(
    attributes: dict[int, tuple[int | None, int]],
) -> dict[int, tuple[int | None, int]]:
    if len(attributes) <= MAX_ATTRIBUTES:
        return attributes
    return dict(sorted(attributes.items(), key=lambda entry: entry[1][1])[-MAX_ATTRIBUTES:])


def _newest_events(events: dict[int, int]) -> dict[int, int]:
    if len(events) <= MAX_EVENT_KEYS:
        return events
    return dict(sorted(events.items(), key=lambda entry: entry[1])[-MAX_EVENT_KEYS:])
