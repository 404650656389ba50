"""What mapping one record gives: a `BrazeUpdate` for one user, or `Filtered` on purpose."""

from __future__ import annotations

from collections import abc
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Filtered:
    """A record dropped on purpose by the named filter."""

    rule: str


class BrazeUpdate:
    """What one record asks of Braze: attributes and events for one user.

    Its /users/track objects, each with the identity's members first, are made with it, once:
    mapping has the values fresh in memory, while batching meets them later, far apart in
    memory. They are `attribute_payload` (None when there is nothing to set) and
    `event_payloads`. `event_keys` gives each event's de-duplication key (the text the mapping
    names, the lead id by default), or None for an event sent every time. Treat it as
    immutable. A class with slots rather than a frozen dataclass: one is made for every record.
    """

    __slots__ = (
        "attribute_payload",
        "attributes",
        "event_keys",
        "event_payloads",
        "events",
        "identity",
        "user_key",
    )

    def __init__(
        self,
        user_key: str,
        identity: abc.Mapping[str, Any],
        attributes: abc.Mapping[str, Any],
        events: tuple[abc.Mapping[str, Any], ...] = (),
        event_keys: tuple[str | None, ...] | None = None,
    ) -> None:
        self.user_key = user_key
        self.identity, self.attributes, self.events = identity, attributes, events
        if event_keys is None:
            event_keys = (None,) * len(events)
        elif len(event_keys) != len(events):
            raise ValueError("one de-duplication key (or None) per event")
        self.event_keys = event_keys
        self.attribute_payload = {**identity, **attributes} if attributes else None
        if len(events) == 1:  # the common case, without a generator's cost
            self.event_payloads: tuple[dict[str, Any], ...] = ({**identity, **events[0]},)
        else:
            self.event_payloads = tuple({**identity, **event} for event in events)

    @property
    def empty(self) -> bool:
        """Nothing to set and no event: nothing to send."""
        return self.attribute_payload is None and not self.event_payloads

    def attribute_object(self) -> dict[str, Any] | None:
        """Return the attributes object for /users/track, or None when there is nothing to set.

        The same object on every call: change a copy, never it.
        """
        return self.attribute_payload

    def event_objects(self) -> list[dict[str, Any]]:
        """Return the event objects for /users/track, each with the identity.

        The same objects on every call (in a new list): change copies, never them.
        """
        return list(self.event_payloads)

    def without_events(self) -> BrazeUpdate:
        """The same update with its events left out."""
        return BrazeUpdate(self.user_key, self.identity, self.attributes)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BrazeUpdate):
            return NotImplemented
        mine = (self.user_key, self.identity, self.attributes, self.events, self.event_keys)
        theirs = (other.user_key, other.identity, other.attributes, other.events, other.event_keys)
        return mine == theirs

    __hash__ = None  # type: ignore[assignment]  # its mappings are not hashable either

    def __repr__(self) -> str:
        return (
            f"BrazeUpdate(user_key={self.user_key!r}, identity={self.identity!r}, "
            f"attributes={self.attributes!r}, events={self.events!r}, "
            f"event_keys={self.event_keys!r})"
        )
