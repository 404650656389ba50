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

    Its /users/track objects, each with the identity, are made with it, once: mapping has the
    values fresh in memory, while batching meets them later, far apart in memory. Treat it as
    immutable. A class with slots rather than a frozen dataclass: one is made for every record,
    and a frozen dataclass costs about four times as much to make. The native mapping plan
    (native/src/lib.rs) makes it too, setting these same slots the way `__init__` does.
    """

    __slots__ = (
        "_attribute_object",
        "_event_objects",
        "attributes",
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
    ) -> None:
        self.user_key = user_key
        self.identity = identity
        self.attributes = attributes
        self.events = events
        self._attribute_object = {**identity, **attributes} if attributes else None
        if len(events) == 1:  # the common case, without a comprehension's cost
            self._event_objects = [{**identity, **events[0]}]
        else:
            self._event_objects = [{**identity, **event} for event in events]

    def attribute_object(self) -> dict[str, Any] | None:
        """Return the attributes object for /users/track, or None when there is nothing to set.

        The same object on every call: change a copy, never it.
        """
        return self._attribute_object

    def event_objects(self) -> list[dict[str, Any]]:
        """Return the event objects for /users/track, each with the identity.

        The same objects on every call (in a new list): change copies, never them.
        """
        return list(self._event_objects)

    def without_events(self) -> BrazeUpdate:
        """The same update with its events left out."""
        return BrazeUpdate(self.user_key, self.identity, self.attributes)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BrazeUpdate):
            return NotImplemented
        return self._fields() == other._fields()

    __hash__ = None  # type: ignore[assignment]  # its mappings are not hashable either

    def __repr__(self) -> str:
        user_key, identity, attributes, events = self._fields()
        return (
            f"BrazeUpdate(user_key={user_key!r}, identity={identity!r}, "
            f"attributes={attributes!r}, events={events!r})"
        )

    def _fields(self) -> tuple[Any, ...]:
        return self.user_key, self.identity, self.attributes, self.events
