"""The sandbox's user profiles, kept in memory and changed the way `/users/track` changes them.

Lookup follows Braze's identifier rules (https://www.braze.com/docs/api/endpoints/user_data/
post_user_track); attribute updates follow the user attributes object
(https://www.braze.com/docs/api/objects_filters/user_attributes_object).
"""

from __future__ import annotations

import itertools
import secrets
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

from outgrow_braze_dev.sandbox.contract import (
    MAX_ARRAY_ITEMS,
    META_KEYS,
    STANDARD_FIELDS,
    Accepted,
    Identity,
    TrackBatch,
    parse_time,
)

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The current time in UTC."""
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """A UTC time written the way Braze exports it, to the millisecond."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass(slots=True)
class Occurrences:
    """How often something happened to a user, and when first and last."""

    first: datetime
    last: datetime
    count: int = 1

    def add(self, when: datetime) -> None:
        """Count one more occurrence at `when`."""
        self.count += 1
        if when < self.first:
            self.first = when
        elif when > self.last:
            self.last = when

    def as_dict(self, name: str) -> dict[str, Any]:
        """The export shape: name, first, last, count."""
        return {"name": name, "first": iso(self.first), "last": iso(self.last), "count": self.count}


class RecordedEvent(NamedTuple):
    """One custom event as it arrived."""

    name: str
    time: datetime
    properties: dict[str, Any]


@dataclass(slots=True, eq=False)
class Profile:
    """One user: identifiers, profile fields, custom attributes, events and purchases."""

    braze_id: str
    created_at: datetime
    recent: deque[RecordedEvent]
    external_id: str | None = None
    aliases: dict[str, str] = field(default_factory=dict)
    fields: dict[str, Any] = field(default_factory=dict)
    custom: dict[str, Any] = field(default_factory=dict)
    events: dict[str, Occurrences] = field(default_factory=dict)
    purchases: dict[str, Occurrences] = field(default_factory=dict)
    touched: int = 0


def _contact_key(kind: str, value: Any) -> str | None:
    # E-mail addresses are matched without regard to case; phone numbers by their digits.
    if not isinstance(value, str):
        return None
    if kind == "email":
        return "email:" + value.strip().lower()
    digits = "".join(c for c in value if c.isdigit())
    return "phone:" + digits if digits else None


class ProfileStore:
    """Every profile of the sandbox's one workspace, with the indexes Braze looks users up by."""

    def __init__(self, recent_events: int = 20, clock: Clock = utc_now) -> None:
        self.recent_events = recent_events
        self.clock = clock
        self.clear()

    def clear(self) -> None:
        """Forget every profile."""
        self._by_braze_id: dict[str, Profile] = {}
        self._by_external_id: dict[str, Profile] = {}
        self._by_alias: dict[tuple[str, str], Profile] = {}
        self._by_contact: dict[str, list[Profile]] = {}
        self._ids = itertools.count(1)
        self._prefix = secrets.token_hex(8)
        self._updates = itertools.count(1)

    def __len__(self) -> int:
        return len(self._by_braze_id)

    def __iter__(self) -> Iterator[Profile]:
        return iter(self._by_braze_id.values())

    def recently_updated(self, limit: int) -> list[Profile]:
        """The `limit` profiles changed last, newest first."""
        return sorted(self, key=lambda profile: profile.touched, reverse=True)[:limit]

    # ----------------------------------------------------------------------- lookup

    def by_external_id(self, external_id: str) -> Profile | None:
        """The profile with this external id."""
        return self._by_external_id.get(external_id)

    def by_alias(self, label: str, name: str) -> Profile | None:
        """The profile with this alias (the name is case-sensitive)."""
        return self._by_alias.get((label, name))

    def by_braze_id(self, braze_id: str) -> Profile | None:
        """The profile with this Braze id."""
        return self._by_braze_id.get(braze_id)

    def by_contact(self, kind: str, value: str) -> list[Profile]:
        """Every profile with this `email` address or `phone` number."""
        return list(self._holders(kind, value))

    def _holders(self, kind: str, value: str) -> list[Profile]:
        """The index's own list of profiles with this e-mail or phone (empty if none): read it,
        never change it."""
        key = _contact_key(kind, value)
        return self._by_contact.get(key, []) if key else []

    def find(self, identity: Identity) -> Profile | None:
        """The profile an object's identifier points at, if any."""
        kind, value = identity.kind, identity.value
        if kind == "external_id":
            return self._by_external_id.get(str(value))
        if kind == "braze_id":
            return self._by_braze_id.get(str(value))
        if kind == "user_alias":
            return self._by_alias.get(value) if isinstance(value, tuple) else None
        return _preferred(self._holders(kind, str(value)))

    # ----------------------------------------------------------------------- updates

    def apply(self, batch: TrackBatch) -> None:
        """Apply every accepted object: attributes, then events, then purchases."""
        for item in batch.accepted:
            self.apply_object(item)

    def apply_object(self, item: Accepted) -> bool:
        """Apply one object; False when it is update-only and its user is unknown."""
        profile = self.find(item.identity)
        if profile is None:
            if not item.may_create:
                return False
            profile = self._create(item.identity)
        _APPLY[item.array](self, profile, item.fields)
        profile.touched = next(self._updates)
        return True

    def _create(self, identity: Identity) -> Profile:
        braze_id = f"{self._prefix}{next(self._ids):08x}"
        recent: deque[RecordedEvent] = deque(maxlen=self.recent_events)
        profile = Profile(braze_id, self.clock(), recent)
        self._by_braze_id[braze_id] = profile
        value = identity.value
        if identity.kind == "external_id" and isinstance(value, str):
            profile.external_id = value
            self._by_external_id[value] = profile
        elif identity.kind == "user_alias" and isinstance(value, tuple):
            profile.aliases[value[0]] = value[1]
            self._by_alias[value] = profile
        else:
            self._set_field(profile, identity.kind, value)
        return profile

    def _apply_attributes(self, profile: Profile, fields: dict[str, Any]) -> None:
        merge = fields.get("_merge_objects") is True
        for key, value in fields.items():
            if key in META_KEYS:
                continue
            if key in STANDARD_FIELDS:
                self._set_field(profile, key, value)
            elif type(value) in _SCALARS:
                profile.custom[key] = value  # what set_custom does with a scalar, called less
            else:
                set_custom(profile.custom, key, value, merge)

    def _set_field(self, profile: Profile, key: str, value: Any) -> None:
        if key in ("email", "phone") and not self._sole_holder(profile, key, value):
            self._unindex(profile, key, profile.fields.get(key))
            self._index(profile, key, value)
        if value is None:
            profile.fields.pop(key, None)
        else:
            profile.fields[key] = value

    def _sole_holder(self, profile: Profile, kind: str, value: Any) -> bool:
        """True when `value` is the profile's e-mail or phone already and it alone holds it:
        unindexing and indexing again would leave the index as it is. Objects identified by
        e-mail carry it as an attribute too, so this is the common case."""
        if type(value) is not str or profile.fields.get(kind) != value:
            return False
        holders = self._holders(kind, value)
        return len(holders) == 1 and holders[0] is profile

    def _index(self, profile: Profile, kind: str, value: Any) -> None:
        key = _contact_key(kind, value)
        if key:
            self._by_contact.setdefault(key, []).append(profile)

    def _unindex(self, profile: Profile, kind: str, value: Any) -> None:
        key = _contact_key(kind, value)
        holders = self._by_contact.get(key or "")
        if holders and profile in holders:
            holders.remove(profile)

    def _apply_event(self, profile: Profile, fields: dict[str, Any]) -> None:
        when = self._event_time(fields["time"])
        name = fields["name"]
        _count(profile.events, name, when)
        profile.recent.appendleft(RecordedEvent(name, when, fields.get("properties") or {}))

    def _apply_purchase(self, profile: Profile, fields: dict[str, Any]) -> None:
        _count(profile.purchases, fields["product_id"], self._event_time(fields["time"]))

    def _event_time(self, text: Any) -> datetime:
        """The event's time; one in the future becomes now, as the event object page says."""
        now = self.clock()
        moment = parse_time(text) or now
        return moment if moment < now else now


_APPLY: dict[str, Callable[[ProfileStore, Profile, dict[str, Any]], None]] = {
    "attributes": ProfileStore._apply_attributes,
    "events": ProfileStore._apply_event,
    "purchases": ProfileStore._apply_purchase,
}


_SCALARS = frozenset({str, int, float, bool})


def _count(tallies: dict[str, Occurrences], name: str, when: datetime) -> None:
    seen = tallies.get(name)
    if seen is None:
        tallies[name] = Occurrences(when, when)
    else:
        seen.add(when)


def _preferred(candidates: list[Profile]) -> Profile | None:
    """Of several profiles sharing an e-mail or phone: the latest updated one with an external
    id, else the latest updated one (the identifier FAQ of the `/users/track` page)."""
    if len(candidates) == 1:  # the common case: one profile has the e-mail or phone
        return candidates[0]
    identified = [profile for profile in candidates if profile.external_id is not None]
    pool = identified or candidates
    return max(pool, key=lambda profile: profile.touched) if pool else None


# --------------------------------------------------------------------------- custom attributes


def set_custom(custom: dict[str, Any], key: str, value: Any, merge: bool) -> None:
    """Apply one custom attribute update: set, remove (null), `inc`, array ops, nested object."""
    if value is None:
        custom.pop(key, None)
    elif isinstance(value, list):
        custom[key] = value if value and isinstance(value[0], dict) else _unique(value)
    elif isinstance(value, dict):
        custom[key] = _operate(custom.get(key), value, merge)
    else:
        custom[key] = value


def _operate(current: Any, update: dict[str, Any], merge: bool) -> Any:
    keys = update.keys()
    if keys == {"inc"}:
        return _increment(current, update["inc"])
    if keys <= {"add", "remove"}:
        return _add_remove(current, update.get("add", ()), update.get("remove", ()))
    if keys <= {"$add", "$remove", "$update"}:
        return _object_array(current, update)
    if merge and isinstance(current, dict):
        return deep_merge(current, update)
    return update


def _increment(current: Any, amount: int | float) -> int | float:
    is_number = isinstance(current, (int, float)) and not isinstance(current, bool)
    return (current if is_number else 0) + amount


def _unique(values: Iterable[Any]) -> list[Any]:
    """Keep the last occurrence of each value, in order (arrays hold unique values)."""
    kept: dict[tuple[type, Any], Any] = {}
    for value in values:
        kept.pop((type(value), value), None)
        kept[(type(value), value)] = value
    return list(kept.values())


def _add_remove(current: Any, add: Iterable[Any], remove: Iterable[Any]) -> list[Any]:
    values = list(current) if isinstance(current, list) else []
    gone = {(type(value), value) for value in remove}
    kept = [value for value in values if (type(value), value) not in gone]
    # An added value goes to the end; one already there moves to the end.
    return _unique([*kept, *add])[-MAX_ARRAY_ITEMS:]


def _object_array(current: Any, update: dict[str, Any]) -> list[Any]:
    items = (
        [item for item in current if isinstance(item, dict)] if isinstance(current, list) else []
    )
    for target in update.get("$remove", ()):
        items = [item for item in items if not _matches(item, target)]
    for target in update.get("$update", ()):
        items = [_updated(item, target) for item in items]
    return [*items, *update.get("$add", ())]


def _matches(item: dict[str, Any], target: dict[str, Any]) -> bool:
    return bool(item.get(target["$identifier_key"]) == target["$identifier_value"])


def _updated(item: dict[str, Any], target: dict[str, Any]) -> dict[str, Any]:
    return deep_merge(item, target["$new_object"]) if _matches(item, target) else item


def deep_merge(current: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Merge `update` into a copy of `current`, object by object (`_merge_objects: true`)."""
    merged = dict(current)
    for key, value in update.items():
        below = merged.get(key)
        if isinstance(value, dict) and isinstance(below, dict) and "$time" not in value:
            merged[key] = deep_merge(below, value)
        else:
            merged[key] = value
    return merged
