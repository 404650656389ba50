"""What mapping one record gives: a `BrazeUpdate` for one user, or `Filtered` on purpose."""

from __future__ import annotations

from collections import abc
from dataclasses import dataclass
from typing import Any, NamedTuple


@dataclass(frozen=True)
class Filtered:
    """A record dropped on purpose by the named filter."""

    rule: str


class BrazeUpdate(NamedTuple):
    """What one record asks of Braze: attributes and events for one user.

    A named tuple rather than a frozen dataclass: one is made for every record, and a frozen
    dataclass costs about four times as much to make.
    """

    user_key: str
    identity: abc.Mapping[str, Any]
    attributes: abc.Mapping[str, Any]
    events: tuple[abc.Mapping[str, Any], ...] = ()

    def attribute_object(self) -> dict[str, Any] | None:
        """Return the attributes object for /users/track, or None when there is nothing to set."""
        if not self.attributes:
            return None
        return {**self.identity, **self.attributes}

    def event_objects(self) -> list[dict[str, Any]]:
        """Return the event objects for /users/track, each with the identity."""
        return [{**self.identity, **event} for event in self.events]
