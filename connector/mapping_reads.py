"""Reading a lead's sources: one function per source, and values shared by rules within a record.

`reader()` makes `Source.first()` a function of a dict lead that gives the value alone. A
profile's `Reads` work out what several of its rules read or type alike once per record: such
values are kept in the record's meta dict under keys no path can name ("#0", "#1", ...).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Hashable, Iterator
from functools import partial
from typing import Any

from connector.mapping_paths import MISSING, Key, Path, walker
from connector.mapping_rules import FieldRule, Profile, Source, has_value

Document = dict[str, Any]
Meta = dict[str, Any]
Reader = Callable[[Document, Meta], Any]

# Values of these types always hold; text must not be blank and lists not empty.
_SOLID = frozenset({int, float, bool, dict})
UNSET = object()  # not yet worked out in this record


def reader(source: Source) -> Reader:
    """Return the value `source.first()` finds, without its path, or MISSING."""
    if not all(_keyed(path) for path in source.paths):
        return partial(_first_by_rule, source)  # only paths not written in a mapping file
    probes = tuple(_probe(path) for path in source.paths)

    def first(document: Document, meta: Meta) -> Any:
        for key, then, on_meta in probes:
            value = (meta if on_meta else document).get(key)
            if value is None:
                continue
            if then is not None:
                value = then(value)
                if value is MISSING:
                    continue
            if type(value) is str:
                if value.strip():
                    return value
            elif type(value) in _SOLID or has_value(value):
                return value
        return MISSING

    return first


def _probe(path: Path) -> tuple[str, Callable[[Any], Any] | None, bool]:
    """A path as its first key, the walker for the steps after it, and whether it is a fact."""
    if path.meta is not None:
        return path.meta, None, True
    first, *rest = path.steps
    assert isinstance(first, Key)  # reader() checked it
    return first.name, walker(tuple(rest)) if rest else None, False


def _keyed(path: Path) -> bool:
    """Whether a path is a fact or starts with a key, as every path a mapping file has does."""
    return path.meta is not None or (bool(path.steps) and isinstance(path.steps[0], Key))


def _first_by_rule(source: Source, document: Document, meta: Meta) -> Any:
    found = source.first(document, meta)
    return MISSING if found is None else found[1]


def remembered(slot: str, compute: Reader) -> Reader:
    """Return `compute`'s value, worked out at most once per record (per meta dict)."""

    def remember(document: Document, meta: Meta) -> Any:
        value = meta.get(slot, UNSET)
        if value is UNSET:
            value = meta[slot] = compute(document, meta)
        return value

    return remember


class Reads:
    """The readers of one profile, and which sources and typed values its rules share."""

    def __init__(self, profile: Profile) -> None:
        fields = [rule for rule in _field_rules(profile) if rule.source is not None]
        self._typed = Counter(typed_key(rule) for rule in fields)
        distinct = {typed_key(rule): rule.source for rule in fields}
        sources = [
            *(condition.source for rule in profile.filters for condition in rule.conditions),
            *(rule.source for rule in profile.identity),
            *distinct.values(),
        ]
        self._read = Counter(source for source in sources if source is not None)
        self._slots: dict[Hashable, str] = {}

    def reader(self, source: Source) -> Reader:
        """`reader(source)`, remembered within a record when several rules read the source."""
        first = reader(source)
        return remembered(self._slot(source), first) if self._read[source] > 1 else first

    def typed_slot(self, rule: FieldRule) -> str | None:
        """Where a field's typed value is kept within a record, if other fields type it alike."""
        key = typed_key(rule)
        return self._slot(key) if self._typed[key] > 1 else None

    def _slot(self, key: Hashable) -> str:
        return self._slots.setdefault(key, f"#{len(self._slots)}")


def typed_key(rule: FieldRule) -> Hashable:
    """Fields with equal keys find equal typed values in a record; arrays, being lists, never."""
    if rule.kind == "array" or rule.source is None:
        return id(rule)
    return (rule.source, rule.kind, rule.transforms, rule.split)


def _field_rules(profile: Profile) -> Iterator[FieldRule]:
    yield from profile.attributes
    for event in profile.events:
        yield event.time
        yield from event.properties
