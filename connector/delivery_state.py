"""The decision what of a user's records to send, and the record of what Braze confirmed.

Screening leaves out what Braze already has: an event whose de-duplication key it confirmed,
an attribute whose confirmed value is the same, or was confirmed from a later record (history
never moves a profile backwards). Confirming writes what Braze accepted. Both apply only to
records whose user keys to the partition they were read from (the guard): only then does this
worker see all of the user's records.

Screening runs for every user a request takes, so it reads the store once and, for the users it
keeps something of, works out the state they will have once Braze accepts it all; confirming
those same records then only writes it. The format is `connector.state_value`'s.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, cast

from connector.batching import Item
from connector.mapping_results import BrazeUpdate
from connector.producer import partition_of
from connector.state_store import StateStore
from connector.state_value import (
    ATTRIBUTE,
    EVENT,
    HEAD,
    MINUTE,
    MINUTE_AT,
    SCALARS,
    VALUE_AT,
    VALUE_POSITION,
    StateValue,
    event_digest,
    json_digest,
    name_digest,
    scalar_digest,
    state_key,
    value_digest,
)

Records = dict[int, list[tuple[bytes, bytes]]]  # per raw partition: (state key, value)

_ENTRIES_AT = HEAD.size  # where the attribute entries start in a value
_ENTRY = ATTRIBUTE.size
_PENDING_LIMIT = 100_000  # users screened and not yet confirmed, before they are forgotten


@dataclass(slots=True)
class Screened:
    """What screening one user's records gave."""

    kept: list[Item] = field(default_factory=list)  # to send, narrowed where something was left out
    skipped: list[Item] = field(default_factory=list)  # as they came; nothing left: finish them
    events_skipped: int = 0
    attributes_skipped_unchanged: int = 0
    attributes_skipped_history: int = 0
    unguarded: int = 0  # sent in full: their user keys to another partition


class _Pending(NamedTuple):
    """A screened user's state record once Braze accepts exactly these items."""

    generation: int  # the store's, when read
    items: list[Item]  # as screening kept them, in order
    partition: int
    row: tuple[bytes, bytes] | None  # None: the same as before


class DeliveryState:
    """Screens users' records against the store and records what Braze confirmed."""

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
        self._pending: dict[str, _Pending] = {}

    def screen(self, user_key: str, items: list[Item], partitions: int) -> Screened:
        """Decide what of one user's waiting records (in offset order) still needs sending.

        Reads the store; changes nothing in it. `partitions`: the raw topic's partition count.
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
        if run is not None and run.kept:
            self._remember(user_key, run)
        return screened

    def _run(self, partition: int, user_key: str) -> _Run:
        key = state_key(user_key)
        before = self.store.get(partition, key)
        now = int(self._clock() // 60)
        return _Run(StateValue(before), key, before, now, now - self._window_minutes)

    def _remember(self, user_key: str, run: _Run) -> None:
        value = run.state.encode(run.oldest_minute)
        row = None if value == run.before else (run.key, value)
        if len(self._pending) >= _PENDING_LIMIT:  # users whose requests failed: start afresh
            self._pending.clear()
        partition = run.kept[0].partition
        self._pending[user_key] = _Pending(self.store.generation, run.kept, partition, row)

    def confirm(self, items: list[Item], partitions: int) -> Records:
        """Record what Braze accepted of these items (each with its update as sent).

        Writes the store at once (before the user can be screened again) and returns, per raw
        partition, the state records to produce. Items whose user keys to another partition,
        and partitions the store does not hold, change nothing.
        """
        users: dict[str, list[Item]] = {}
        for item in items:
            users.setdefault(item.update.user_key, []).append(item)
        records: Records = {}
        generation = self.store.generation
        for user_key, mine in users.items():
            pending = self._pending.pop(user_key, None)
            if pending is not None and pending.generation == generation and pending.items == mine:
                partition, row = pending.partition, pending.row  # worked out when screened
            else:
                partition = partition_of(user_key.encode("utf-8", "surrogatepass"), partitions)
                guarded = [item for item in mine if item.partition == partition]
                if not guarded or not self.store.holds(partition):
                    continue
                row = self._fold(user_key, partition, guarded)
            if row is not None:
                records.setdefault(partition, []).append(row)
        for partition, rows in records.items():
            self.store.put(partition, rows)
        return records

    def _fold(self, user_key: str, partition: int, items: list[Item]) -> _Row | None:
        """Fold what Braze accepted into the stored state: the new state record, or None."""
        key = state_key(user_key)
        before = self.store.get(partition, key)
        state = StateValue(before)
        now = self._minute()
        for item in sorted(items, key=_offset):
            _record(state, item, now)
        value = state.encode(now - self._window_minutes)
        return None if value == before else (key, value)

    def _minute(self) -> int:
        return int(self._clock() // 60)


_Row = tuple[bytes, bytes]


class _Run:
    """Screening of one user's records: the user's state as it will be once the kept are sent."""

    __slots__ = ("before", "kept", "key", "now", "oldest_minute", "state")

    def __init__(
        self, state: StateValue, key: bytes, before: bytes | None, now: int, oldest_minute: int
    ) -> None:
        self.state, self.key, self.before = state, key, before
        self.now, self.oldest_minute = now, oldest_minute
        self.kept: list[Item] = []

    def screen(self, item: Item, screened: Screened) -> None:
        """Keep the item, narrow it, or skip it."""
        update: BrazeUpdate = item.update  # type: ignore[assignment]
        attributes = self._attributes(update.attributes, item.offset, screened)
        events, keys = self._events(update.events, update.event_keys, screened)
        if attributes is None and events is None:
            self.kept.append(item)
            screened.kept.append(item)
            return
        left_attributes = update.attributes if attributes is None else attributes
        left_events = update.events if events is None else events
        if not left_attributes and not left_events:
            screened.skipped.append(item)
            return
        narrowed = BrazeUpdate(
            update.user_key,
            update.identity,
            left_attributes,
            left_events,
            update.event_keys if keys is None else keys,
        )
        kept = Item(*item[:2], narrowed, *item[3:])  # what _replace does, at half the cost
        self.kept.append(kept)
        screened.kept.append(kept)

    def _attributes(
        self, attributes: Mapping[str, Any], offset: int, screened: Screened
    ) -> dict[str, Any] | None:
        """The attributes to send, or None when all of them are.

        Looks the entries up in the value's bytes here rather than through StateValue's
        methods: this loop runs for every attribute of every record.
        """
        kept: dict[str, Any] = {}
        instructions: dict[str, Any] = {}
        state = self.state
        data = state.data
        history = unchanged = 0
        end = _ENTRIES_AT + state.attributes * _ENTRY
        for name, value in attributes.items():
            if type(name) is str and name[:1] == "_":  # an instruction, not data
                instructions[name] = value
                continue
            digest = name_digest(name)
            index = data.find(digest, _ENTRIES_AT, end)
            while index >= 0 and (index - _ENTRIES_AT) % _ENTRY:  # straddles two entries
                index = data.find(digest, index + 1, end)
            if index >= 0:
                confirmed, position = VALUE_POSITION.unpack_from(data, index + VALUE_AT)
                if position >= offset:
                    history += 1
                    continue
            new = scalar_digest(value) if type(value) in SCALARS else json_digest(value)
            if index < 0:
                if new is not None:
                    state.append_attribute(digest, new, offset)  # as it will be once sent
                    end += _ENTRY
            elif confirmed == new:
                unchanged += 1
                continue
            else:
                state.replace_at(index, new, offset)  # as it will be once sent
                end = _ENTRIES_AT + state.attributes * _ENTRY  # None: the entry is gone
            kept[name] = value
        screened.attributes_skipped_history += history
        screened.attributes_skipped_unchanged += unchanged
        if len(kept) + len(instructions) == len(attributes):
            return None if kept or not instructions else {}
        return kept | instructions if kept else {}

    def _events(
        self, events: Sequence[Mapping[str, Any]], keys: Sequence[str | None], screened: Screened
    ) -> tuple[tuple[Mapping[str, Any], ...] | None, tuple[str | None, ...] | None]:
        """The events to send with their keys, or (None, None) when all of them are."""
        kept: list[int] = []
        state = self.state
        data = state.data
        for index, key in enumerate(keys):
            if key is not None:
                event = events[index]
                name = event.get("name") if type(event) is dict else _event_name(event)
                digest = event_digest(name, key)
                start = HEAD.size + state.attributes * ATTRIBUTE.size
                at = data.find(digest, start)
                while at >= 0 and (at - start) % EVENT.size:  # straddles two entries
                    at = data.find(digest, at + 1)
                if at < 0:
                    state.append_event(digest, self.now)
                elif MINUTE.unpack_from(data, at + MINUTE_AT)[0] >= self.oldest_minute:
                    screened.events_skipped += 1
                    continue
                else:  # expired: confirmed again, it becomes the newest
                    state.add_event(digest, self.now)
            kept.append(index)
        if len(kept) == len(events):
            return None, None
        return tuple(events[i] for i in kept), tuple(keys[i] for i in kept)


def _event_name(event: Mapping[str, Any]) -> object:
    return event.get("name") if isinstance(event, Mapping) else None


def _has_content(item: Item) -> bool:
    update = item.update
    return update.attribute_payload is not None or bool(update.event_payloads)


def _offset(item: Item) -> int:
    return item.offset


def _record(state: StateValue, item: Item, now: int) -> None:
    """Fold what Braze accepted of one record into the user's state."""
    update = cast(BrazeUpdate, item.update)
    for name, value in update.attributes.items():
        if not (isinstance(name, str) and name[:1] == "_"):
            state.set_attribute(name_digest(name), value_digest(value), item.offset)
    for event, key in zip(update.events, update.event_keys, strict=True):
        if key is not None:
            state.add_event(event_digest(_event_name(event), key), now)
