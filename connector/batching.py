"""Coalesce mapped records per user and pack them into /users/track requests.

Braze counts at most 75 objects per request, across `attributes`, `events` and `purchases`
(https://www.braze.com/docs/api/api_limits); customers on legacy limits may send 75 per array.
"""

from __future__ import annotations

import bisect
import heapq
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

import orjson


class Update(Protocol):
    """What batching needs of a mapped record (see `connector.mapping.BrazeUpdate`).

    A request carries the payloads, each a /users/track object; `attribute_object()` gives the
    same attributes object, asked for only to merge a user's several. `attributes` are those
    the record sets, without the identity (counted once delivered).
    """

    @property
    def user_key(self) -> str: ...

    @property
    def attributes(self) -> Mapping[str, Any]: ...

    @property
    def attribute_payload(self) -> dict[str, Any] | None: ...

    @property
    def event_payloads(self) -> Sequence[dict[str, Any]]: ...

    def attribute_object(self) -> dict[str, Any] | None: ...


class Item(NamedTuple):
    """One mapped record waiting for delivery, with where it came from.

    A named tuple rather than a frozen dataclass: one is made for every record.
    """

    partition: int
    offset: int
    update: Update
    received_at_ms: int | None = None  # when the receiver took it, for end-to-end latency
    record: Any = None  # the consumed record, for a dead letter (the worker's business)
    owner: Any = None  # what tracks its partition's offsets (the worker's business)

    @property
    def user_key(self) -> str:
        return self.update.user_key


# What to send of a user's waiting records, asked when the user is taken for a request (no
# request of the user is in flight then): given them in (partition, offset) order, it returns
# those to send, each possibly narrowed, and settles the others itself.
Screen = Callable[[str, list[Item]], list[Item]]


class UserObjects:
    """A user's coalesced objects: one attributes object (last value wins) and every event.

    A class with slots rather than a dataclass: one is made for every user a request takes.
    """

    __slots__ = (
        "attribute_items",
        "attributes",
        "event_items",
        "event_objects",
        "records",
        "user_key",
    )

    def __init__(self, user_key: str, items: Iterable[Item] = ()) -> None:
        """Fold the user's records in, in offset order."""
        self.user_key = user_key
        attributes: Any = None  # a payload, or (merged) a dict of the user's own
        attribute_items: list[Item] = []
        event_objects: list[Any] = []
        event_items: list[Item] = []  # the record of each event object
        records: list[Item] = []  # every record folded in that gave an object
        for item in items:
            update = item.update
            found = update.attribute_payload
            events = update.event_payloads
            if found is not None:
                if attributes is None:
                    attributes = found
                elif len(attribute_items) == 1:  # a record's own object is never changed
                    first = attribute_items[0].update.attribute_object()
                    attributes = first | update.attribute_object()  # type: ignore[operator]
                else:  # the merged copy is the user's own
                    attributes.update(update.attribute_object())
                attribute_items.append(item)
            if events:
                event_items += [item] * len(events)
                event_objects += events
            if found is not None or events:
                records.append(item)
        self.attributes = attributes
        self.attribute_items = attribute_items
        self.event_objects = event_objects
        self.event_items = event_items
        self.records = records

    @property
    def events(self) -> list[tuple[dict[str, Any], Item]]:
        """Every event object with its record."""
        return list(zip(self.event_objects, self.event_items, strict=True))

    @property
    def size(self) -> int:
        """How many Braze objects this user needs."""
        return (self.attributes is not None) + len(self.event_objects)

    @property
    def items(self) -> list[Item]:
        """Every record folded into this user's objects."""
        return list(self.records)


@dataclass
class TrackRequest:
    """One /users/track body, and which records each object came from."""

    attributes: list[Any] = field(default_factory=list)
    attribute_items: list[list[Item]] = field(default_factory=list)
    events: list[Any] = field(default_factory=list)
    event_items: list[Item] = field(default_factory=list)
    users: list[str] = field(default_factory=list)
    records: list[Item] = field(default_factory=list)  # every record with an object here, once

    @property
    def size(self) -> int:
        return len(self.attributes) + len(self.events)

    def encoded(self) -> bytes:
        """The JSON body to send; an empty array is left out."""
        body: dict[str, list[Any]] = {}
        if self.attributes:
            body["attributes"] = self.attributes
        if self.events:
            body["events"] = self.events
        return orjson.dumps(body)

    def items_for(self, input_array: str, index: int) -> list[Item]:
        """The records behind the object Braze names by array and index."""
        if input_array == "attributes" and 0 <= index < len(self.attribute_items):
            return list(self.attribute_items[index])
        if input_array == "events" and 0 <= index < len(self.event_items):
            return [self.event_items[index]]
        return []

    def items(self) -> list[Item]:
        """Every record with an object in this request."""
        return list(self.records)

    def keeping(self, keep: Callable[[Item], bool]) -> TrackRequest:
        """The request with only the objects one of whose records `keep` holds for (itself when
        that is all of them)."""
        objects = _objects_of(self)
        kept = [obj for obj in objects if any(map(keep, obj[2]))]
        return self if len(kept) == len(objects) else _request_of(kept)

    def split(self) -> tuple[TrackRequest, TrackRequest]:
        """Halve the request by users (or by objects for a single user), to isolate bad objects."""
        objects = _objects_of(self)
        half = max(1, len(objects) // 2)
        return _request_of(objects[:half]), _request_of(objects[half:])


@dataclass(frozen=True)
class Limits:
    """How many objects a request may carry."""

    max_objects: int = 75
    per_array: bool = False

    def fits(self, request: TrackRequest, attributes: int, events: int) -> bool:
        """Whether that many more objects fit into the request."""
        if self.per_array:
            return (
                len(request.attributes) + attributes <= self.max_objects
                and len(request.events) + events <= self.max_objects
            )
        return (
            len(request.attributes) + len(request.events) + attributes + events <= self.max_objects
        )

    def takes(self, request: TrackRequest, user: UserObjects) -> bool:
        """Whether the user's objects fit into the request."""
        return self.fits(request, user.attributes is not None, len(user.event_objects))


@dataclass
class Packed:
    """Requests for this round, and records no request can hold."""

    requests: list[TrackRequest] = field(default_factory=list)
    oversized: list[Item] = field(default_factory=list)
    held_until: float | None = None  # a last request with room left waits till then


def _prefix_that_fits(
    user: UserObjects, limits: Limits, request: TrackRequest | None = None
) -> tuple[UserObjects, list[Item]]:
    """Keep the user's first records that fit the room `request` has left (an empty request
    unless given); return the others."""
    room = request or TrackRequest()
    items = sorted(user.records, key=_position)
    attributes, events = False, 0
    for position, item in enumerate(items):
        update = item.update
        attributes = attributes or update.attribute_payload is not None
        events += len(update.event_payloads)
        if not limits.fits(room, attributes, events):
            return UserObjects(user.user_key, items[:position]), items[position:]
    return UserObjects(user.user_key, items), []


def _add_user(request: TrackRequest, user: UserObjects) -> None:
    """Move the user's objects into the request."""
    request.users.append(user.user_key)
    if user.attributes is not None:
        request.attributes.append(user.attributes)
        request.attribute_items.append(user.attribute_items)
    request.events += user.event_objects
    request.event_items += user.event_items
    request.records += user.records


def _add_one(request: TrackRequest, user: str, item: Item, limits: Limits) -> bool:
    """Add a user's only record to the request if its objects fit: what `_add_user` does with
    `UserObjects(user, [item])`, without making one. Say whether it was added."""
    update = item.update
    found = update.attribute_payload
    events = update.event_payloads
    if (found is None and not events) or not limits.fits(request, found is not None, len(events)):
        return False
    request.users.append(user)
    if found is not None:
        request.attributes.append(found)
        request.attribute_items.append([item])
    if events:
        request.events += events
        request.event_items += [item] * len(events)
    request.records.append(item)
    return True


def _position(item: Item) -> tuple[int, int]:
    return item.partition, item.offset


TOP_UP_ROOM = 3  # a request this close to full may be topped up (UserQueue)
TOP_UP_SCAN = 8  # candidates looked at for it


def _key(item: Item) -> int:
    """The record's (partition, offset) place as one int, which a heap compares fastest."""
    return item.partition << 63 | item.offset  # Kafka offsets are below 2**63


class UserQueue:
    """Mapped records waiting for a request, queued per user, with the users in flight.

    `take()` packs the users without a request in flight, in the order of their first waiting
    record ((partition, offset)), into requests filled as far as whole records allow. A user
    never spans two requests in flight, so Braze cannot apply one user's updates out of order:
    when a user does not fit the room a request has left, the user's first records that fit
    fill it and the others wait until the user is released (so do those of a user larger than
    a whole request). A record is never split; one that alone exceeds a request is oversized.

    Top-up (on unless turned off): a request with room for at most `TOP_UP_ROOM` more objects,
    which the next user would not fill exactly, is filled exactly by a later user when the
    first records of one of the first few ready users with several records waiting do (the
    others wait until it is released). Records of two objects each (attributes and an event)
    would otherwise leave most requests at 74 objects of 75. It coalesces only the users it
    packs, so a request costs the work of its own records, not of the whole backlog.

    `screen` (optional) decides what is sent of a user's records when the user is taken, or
    looked at for a top-up: the queue keeps what it returns in their place and forgets the rest.
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        *,
        top_up: bool = True,
        screen: Screen | None = None,
    ) -> None:
        self.in_flight: set[str] = set()
        self.top_up = top_up
        self.screen = screen
        # Users whose waiting records were screened since those or the user's state last
        # changed (a record added, a request released): screening them again gives the same.
        self._screened_users: set[str] = set()
        self._clock = clock
        self._items: dict[str, list[Item]] = {}  # per user, in (partition, offset) order
        self._since: dict[str, float] = {}  # per user, when its oldest waiting record came
        # The places (`_key`) of ready users' first records, and whose they are: those that
        # come in order (new users, mostly) in a queue, the others in a heap. Entries left stale
        # by a change are skipped when they come first.
        self._in_order: deque[int] = deque()
        self._ready: list[int] = []
        self._ready_users: dict[int, str] = {}
        # Ready users with several records waiting, the candidates to top a request up with, in
        # the order they became one; entries left stale by a change are skipped and dropped.
        self._several: dict[str, None] = {}
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def add(self, item: Item) -> None:
        """Queue one more record."""
        user = item.update.user_key
        items = self._items.get(user)
        self._count += 1
        self._screened_users.discard(user)
        if items is None:
            items = self._items[user] = [item]
            self._since[user] = self._clock()
        elif items[-1][:2] < item[:2]:  # (partition, offset)
            items.append(item)
            if len(items) == 2 and user not in self.in_flight:
                self._several[user] = None
            return
        else:  # a user whose records live in several partitions
            bisect.insort(items, item, key=_position)
            if user not in self.in_flight:
                self._several[user] = None
        if items[0] is item and user not in self.in_flight:
            self._push(user, item)

    def take(self, max_requests: int, limits: Limits, *, wait_s: float = 0.0) -> Packed:
        """Pack at most `max_requests` requests; their users are in flight until released.

        A last request that still has room goes only once its oldest record has waited
        `wait_s`; until then it is queued again (`held_until` says when it may go), so that
        records arriving meanwhile can fill it.
        """
        packed, current, deferred = Packed(), TrackRequest(), []
        no_top_up = limits.per_array or not self.top_up
        top_up_from = limits.max_objects + 1 if no_top_up else limits.max_objects - TOP_UP_ROOM
        arrivals: dict[str, float] = {}  # of the users in `current`
        while max_requests > 0 and (user := self._next_ready()) is not None:
            waiting = self._items[user]
            if self.screen is not None and not (waiting := self._screened(user, waiting)):
                continue  # nothing of the user's is left to send
            if top_up_from <= current.size < limits.max_objects and self._top_up(
                current, waiting, limits, arrivals
            ):
                continue  # the request is full: the next user starts the next one
            if len(waiting) == 1 and _add_one(current, user, waiting[0], limits):
                arrivals[user] = self._pop(user)  # the common case: one record, room for it
                continue
            objects = UserObjects(user, waiting)
            fits = limits.takes(current, objects)
            if not fits and current.records:
                filled = self._fill(current, objects, limits)
                packed.requests.append(current)
                current, arrivals = TrackRequest(), {}
                if len(packed.requests) == max_requests:
                    break
                if filled:
                    continue
                fits = limits.takes(current, objects)
            if not self._add(current, objects, fits, limits, packed, arrivals):
                deferred.append(user)
        if current.records:
            self._last(packed, current, arrivals, limits, wait_s)
        self.release(deferred, sent=False)  # they wait for the next round
        return packed

    def _add(
        self,
        request: TrackRequest,
        user: UserObjects,
        fits: bool,
        limits: Limits,
        packed: Packed,
        arrivals: dict[str, float],
    ) -> bool:
        """Take the user and add what fits of its records to the request (all if it `fits`,
        else its first records that fit an empty request; the others wait for it to be
        released, but for a first record that alone exceeds a request, which is oversized).
        Say whether any were added."""
        since = self._pop(user.user_key)
        if not fits:
            prefix, rest = _prefix_that_fits(user, limits)
            if not prefix.records:
                packed.oversized.append(rest.pop(0))
            self._put_back(user.user_key, rest, since)
            user = prefix
        if not user.records:
            return False
        _add_user(request, user)
        arrivals[user.user_key] = since
        return True

    def _last(
        self,
        packed: Packed,
        request: TrackRequest,
        arrivals: dict[str, float],
        limits: Limits,
        wait_s: float,
    ) -> None:
        """Send the last request if it is full or its oldest record waited `wait_s`, else
        queue its records again and say when it may go."""
        held_until = min(arrivals.values()) + wait_s
        if held_until <= self._clock() or _full(request, limits):
            packed.requests.append(request)
        else:
            self._restore(request, arrivals)
            packed.held_until = held_until

    def _top_up(
        self, request: TrackRequest, head: list[Item], limits: Limits, arrivals: dict[str, float]
    ) -> bool:
        """Fill a request's last few places exactly with the first records of a ready user of
        several, when the next user (`head`, its records) would not; note the user's arrival
        (the rest of its records wait until it is released). Say whether it was filled."""
        room = limits.max_objects - request.size
        if not self._several or _objects_in(head) == room:
            return False
        several, items_of, in_flight = self._several, self._items, self.in_flight
        stale = []
        found = False
        for scanned, user in enumerate(several):
            if scanned == TOP_UP_SCAN:
                break
            items = items_of.get(user)
            if items is not None and self.screen is not None and user not in in_flight:
                items = self._screened(user, items)
            if not items or len(items) < 2 or user in in_flight:
                stale.append(user)
                continue
            count = _prefix_of_size(items, room)
            if count:
                stale.append(user)
                arrivals[user] = since = self._take_out(user)
                self._put_back(user, items[count:], since)
                _add_user(request, UserObjects(user, items[:count]))
                found = True
                break
        for user in stale:
            del several[user]
        return found

    def _screened(self, user: str, waiting: list[Item]) -> list[Item]:
        """Keep what `screen` says is to be sent of a ready user's records, in their place; a
        user left with none leaves the queue (its place in the ready order is left stale)."""
        if user in self._screened_users:
            return waiting
        kept = self.screen(user, waiting)  # type: ignore[misc]  # only called with a screen
        if kept is waiting:
            self._screened_users.add(user)
            return kept
        self._count -= len(waiting) - len(kept)
        if not kept:  # its entries in the ready order and among several are stale now
            del self._items[user], self._since[user]
            return kept
        self._screened_users.add(user)
        self._items[user] = kept
        if _key(kept[0]) != _key(waiting[0]):
            self._push(user, kept[0])  # its old place is stale now, or popped by this take
        return kept

    def _take_out(self, user: str) -> float:
        """Take a ready user with all its records, wherever it is in the ready order; return
        their arrival. Its place in the order is left stale."""
        items = self._items.pop(user)
        self._ready_users.pop(_key(items[0]), None)
        self.in_flight.add(user)
        self._count -= len(items)
        return self._since.pop(user)

    def release(self, users: Iterable[str], *, sent: bool = True) -> None:
        """The users' requests are done: their waiting records may be sent. Users taken and
        then queued again without being `sent` keep their screening: their state is the same."""
        for user in users:
            self.in_flight.discard(user)
            if sent:
                self._screened_users.discard(user)  # its state may have changed
            items = self._items.get(user)
            if items:
                self._push(user, items[0])
                if len(items) > 1:
                    self._several[user] = None

    def drop(self, partitions: set[int]) -> dict[int, int]:
        """Forget the records of (revoked) partitions; say how many each partition had."""
        dropped = Counter(
            item.partition
            for items in self._items.values()
            for item in items
            if item.partition in partitions
        )
        for user, items in list(self._items.items()):
            kept = [item for item in items if item.partition not in partitions]
            if kept:
                self._items[user] = kept
            else:
                del self._items[user], self._since[user]
        self._count = sum(len(items) for items in self._items.values())
        self._screened_users.clear()
        self._ready_users = {
            _key(items[0]): user
            for user, items in self._items.items()
            if user not in self.in_flight
        }
        self._in_order, self._ready = deque(sorted(self._ready_users)), []
        self._several = {
            user: None
            for user, items in self._items.items()
            if len(items) > 1 and user not in self.in_flight
        }
        return dict(dropped)

    def _push(self, user: str, first: Item) -> None:
        key = _key(first)
        self._ready_users[key] = user
        in_order = self._in_order
        if not in_order or in_order[-1] < key:
            in_order.append(key)
        else:
            heapq.heappush(self._ready, key)

    def _pop_first_key(self) -> int:
        in_order, ready = self._in_order, self._ready
        if in_order and (not ready or in_order[0] < ready[0]):
            return in_order.popleft()
        return heapq.heappop(ready)

    def _next_ready(self) -> str | None:
        """The ready user whose first record comes first, left first."""
        in_order, ready, users = self._in_order, self._ready, self._ready_users
        while in_order or ready:
            key = in_order[0] if in_order and (not ready or in_order[0] < ready[0]) else ready[0]
            user = users.get(key)
            if user is not None and user not in self.in_flight:
                items = self._items.get(user)
                if items and _key(items[0]) == key:
                    return user
            users.pop(self._pop_first_key(), None)  # copies of one key are all stale at once
        return None

    def _pop(self, user: str) -> float:
        """Take the first ready user with all its records; return their arrival."""
        del self._ready_users[self._pop_first_key()]
        self.in_flight.add(user)  # taken this round, so that stale entries cannot return it
        self._several.pop(user, None)
        self._count -= len(self._items.pop(user))
        return self._since.pop(user)

    def _fill(self, request: TrackRequest, user: UserObjects, limits: Limits) -> bool:
        """Fill the room left in `request` with the user's first records, if any fit; the
        others wait until the user is released. Say whether the user was taken."""
        head, rest = _prefix_that_fits(user, limits, request)
        if not head.records:
            return False
        self._put_back(user.user_key, rest, self._pop(user.user_key))
        _add_user(request, head)
        return True

    def _put_back(self, user: str, items: list[Item], since: float) -> None:
        if items:
            self._items[user] = items
            self._since[user] = since
            self._count += len(items)

    def _restore(self, request: TrackRequest, arrivals: dict[str, float]) -> None:
        """Queue a request's records again, ahead of what their users still have waiting."""
        taken: dict[str, list[Item]] = {}
        for item in request.items():
            taken.setdefault(item.user_key, []).append(item)
        for user, items in taken.items():
            waiting = self._items.pop(user, [])
            self._count -= len(waiting)
            self._since.pop(user, None)
            self._put_back(user, sorted(items, key=_position) + waiting, arrivals[user])
        self.release(taken, sent=False)


def _prefix_of_size(items: list[Item], size: int) -> int:
    """How many of a user's first records give exactly `size` objects coalesced, or 0."""
    attributes, events = False, 0
    for count, item in enumerate(items, 1):
        update = item.update
        attributes = attributes or update.attribute_payload is not None
        events += len(update.event_payloads)
        if attributes + events >= size:
            return count if attributes + events == size else 0
    return 0


def _objects_in(items: list[Item]) -> int:
    """How many objects a user's records give, coalesced: `UserObjects(...).size`, without
    merging its attributes objects."""
    attributes = any(item.update.attribute_payload is not None for item in items)
    return attributes + sum(len(item.update.event_payloads) for item in items)


def _full(request: TrackRequest, limits: Limits) -> bool:
    return not (limits.fits(request, 1, 0) or limits.fits(request, 0, 1))


_Object = tuple[str, dict[str, Any], list[Item]]


def _objects_of(request: TrackRequest) -> list[_Object]:
    objects: list[_Object] = [
        ("attributes", obj, items)
        for obj, items in zip(request.attributes, request.attribute_items, strict=True)
    ]
    objects.extend(
        ("events", obj, [item])
        for obj, item in zip(request.events, request.event_items, strict=True)
    )
    return objects


def _request_of(objects: Sequence[_Object]) -> TrackRequest:
    request = TrackRequest()
    seen: dict[tuple[int, int], Item] = {}
    for array, obj, items in objects:
        if array == "attributes":
            request.attributes.append(obj)
            request.attribute_items.append(items)
        else:
            request.events.append(obj)
            request.event_items.append(items[0])
        for item in items:
            seen.setdefault((item.partition, item.offset), item)
    request.records = list(seen.values())
    return request


def describe(mapping: Mapping[str, Any]) -> str:
    """A short description of a request body for logs: object counts only, never values."""
    return ", ".join(f"{name}={len(mapping.get(name, []))}" for name in ("attributes", "events"))
