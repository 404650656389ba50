"""What mapping one record gives: a `BrazeUpdate` for one user, or `Filtered` on purpose."""

from __future__ import annotations

import itertools
from collections import abc
from dataclasses import dataclass
from typing import Any

import orjson


@dataclass(frozen=True)
class Filtered:
    """A record dropped on purpose by the named filter."""

    rule: str


_Fields = tuple[abc.Mapping[str, Any], abc.Mapping[str, Any], tuple[abc.Mapping[str, Any], ...]]


def payload_object(payload: Any) -> Any:
    """A /users/track object as a dict, read back if it is JSON already."""
    return orjson.loads(payload) if type(payload) is bytes else payload


def payload_json(payload: Any) -> bytes:
    """A /users/track object as JSON, written if it is a dict."""
    return payload if type(payload) is bytes else orjson.dumps(payload)


class BrazeUpdate:
    """What one record asks of Braze: attributes and events for one user.

    Its /users/track objects, each with the identity, are made with it, once: mapping has the
    values fresh in memory, while batching meets them later, far apart in memory. They are
    `attribute_payload` (None when there is nothing to set) and `event_payloads`, what a request
    carries: dicts when Python made the update, and JSON (bytes) when the native plan did
    (native/src/lib.rs sets these slots without `__init__`, and `_identity_json`), so that a
    request is written by joining bytes. Anything else (the fields, the objects as dicts) is
    read back from that JSON when asked for. Treat it as immutable. A class with slots rather
    than a frozen dataclass: one is made for every record.
    """

    __slots__ = ("_fields", "_identity_json", "attribute_payload", "event_payloads", "user_key")

    attribute_payload: dict[str, Any] | bytes | None
    event_payloads: tuple[dict[str, Any] | bytes, ...]

    def __init__(
        self,
        user_key: str,
        identity: abc.Mapping[str, Any],
        attributes: abc.Mapping[str, Any],
        events: tuple[abc.Mapping[str, Any], ...] = (),
    ) -> None:
        self.user_key = user_key
        self._fields = (identity, attributes, events)
        self._identity_json = None
        self.attribute_payload = {**identity, **attributes} if attributes else None
        if len(events) == 1:  # the common case, without a generator's cost
            self.event_payloads = ({**identity, **events[0]},)
        else:
            self.event_payloads = tuple({**identity, **event} for event in events)

    @property
    def identity(self) -> abc.Mapping[str, Any]:
        return self._decoded()[0]

    @property
    def attributes(self) -> abc.Mapping[str, Any]:
        return self._decoded()[1]

    @property
    def events(self) -> tuple[abc.Mapping[str, Any], ...]:
        return self._decoded()[2]

    @property
    def empty(self) -> bool:
        """Nothing to set and no event: nothing to send."""
        return self.attribute_payload is None and not self.event_payloads

    def attribute_object(self) -> dict[str, Any] | None:
        """Return the attributes object for /users/track, or None when there is nothing to set.

        The same object on every call: change a copy, never it.
        """
        payload = self.attribute_payload
        if type(payload) is bytes:
            payload = self.attribute_payload = payload_object(payload)
        return payload  # type: ignore[return-value]

    def event_objects(self) -> list[dict[str, Any]]:
        """Return the event objects for /users/track, each with the identity.

        The same objects on every call (in a new list): change copies, never them.
        """
        payloads = self.event_payloads
        if payloads and type(payloads[0]) is bytes:
            payloads = self.event_payloads = tuple(map(payload_object, payloads))
        return list(payloads)  # type: ignore[arg-type]

    def without_events(self) -> BrazeUpdate:
        """The same update with its events left out."""
        try:
            identity, attributes, _ = self._fields
        except AttributeError:  # made from JSON: its attributes object stays as it is
            update = object.__new__(BrazeUpdate)
            update.user_key, update._identity_json = self.user_key, self._identity_json
            update.attribute_payload, update.event_payloads = self.attribute_payload, ()
            return update
        return BrazeUpdate(self.user_key, identity, attributes)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BrazeUpdate):
            return NotImplemented
        return (self.user_key, *self._decoded()) == (other.user_key, *other._decoded())

    __hash__ = None  # type: ignore[assignment]  # its mappings are not hashable either

    def __repr__(self) -> str:
        identity, attributes, events = self._decoded()
        return (
            f"BrazeUpdate(user_key={self.user_key!r}, identity={identity!r}, "
            f"attributes={attributes!r}, events={events!r})"
        )

    def _decoded(self) -> _Fields:
        """(identity, attributes, events), read back from the objects when made from JSON:
        each object holds the identity's members first, then its own."""
        try:
            return self._fields
        except AttributeError:
            pass
        identity = orjson.loads(self._identity_json)  # type: ignore[arg-type]
        skip = len(identity)
        found = self.attribute_object()
        attributes = {} if found is None else dict(itertools.islice(found.items(), skip, None))
        events = tuple(dict(itertools.islice(o.items(), skip, None)) for o in self.event_objects())
        fields: _Fields = (identity, attributes, events)
        self._fields = fields
        return fields
