"""The compiled rules of a mapping file, and how each one reads a lead.

Nothing here quotes a value from the lead in a message: failures name the rule and the path, so
reasons can go to the dead-letter topic without personal data in them.
"""

from __future__ import annotations

import re
from collections import abc
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from connector.mapping_paths import MISSING, Path
from connector.transforms import CoercionError, Transform, coerce, text_of, transform_text

Document = abc.Mapping[str, Any]
Meta = abc.Mapping[str, Any]


class MappingFailure(Exception):
    """A record that cannot be mapped; it belongs on the dead-letter topic with this reason."""

    def __init__(self, stage: str, reason: str) -> None:
        super().__init__(reason)
        self.stage = stage
        self.reason = reason

    def __repr__(self) -> str:
        return f"MappingFailure(stage={self.stage!r}, reason={self.reason!r})"


@dataclass(frozen=True)
class Source:
    """Paths tried in order; the first that holds a value wins."""

    paths: tuple[Path, ...]

    def candidates(self, document: Document, meta: Meta) -> Iterator[tuple[Path, Any]]:
        """Yield each path holding a value (not null, blank text or an empty list), with it."""
        for path in self.paths:
            value = path.resolve(document, meta)
            if has_value(value):
                yield path, value

    def first(self, document: Document, meta: Meta) -> tuple[Path, Any] | None:
        # A loop rather than next(candidates()): this runs for every rule of every record.
        for path in self.paths:
            value = path.resolve(document, meta)
            if has_value(value):
                return path, value
        return None

    def __str__(self) -> str:
        return ", ".join(path.text for path in self.paths)


def has_value(value: Any) -> bool:
    """Whether a path found a value: not missing, blank text or an empty list."""
    if value is MISSING or value == []:
        return False
    return not isinstance(value, str) or bool(value.strip())


@dataclass(frozen=True)
class FieldRule:
    """One attribute or event property: where its value comes from and what type it has."""

    label: str  # "attribute 'x'", for messages
    name: str
    kind: str
    source: Source | None  # None: a constant
    fixed: Any = MISSING  # the constant, or the default when the source finds nothing
    required: bool = False
    transforms: tuple[Transform, ...] = ()
    split: str | None = None

    def value(self, document: Document, meta: Meta) -> Any:
        """Return the typed value, or MISSING when it is absent and optional."""
        if self.source is None:
            return self.fixed
        found = self.source.first(document, meta)
        if found is None:
            if self.required:
                raise MappingFailure("map", f"{self.label} is required but {self._nowhere()}")
            return self.fixed
        path, raw = found
        try:
            if self.transforms:
                raw = transform_text(raw, self.transforms)
            return coerce(raw, self.kind, self.split)
        except CoercionError as exc:
            raise MappingFailure("map", f"{self.label}: the value at {path} {exc}") from None

    def _nowhere(self) -> str:
        if self.source is not None and len(self.source.paths) == 1:
            return f"{self.source} holds no value"
        return f"none of {self.source} holds a value"


@dataclass(frozen=True)
class Identity:
    """The Braze identifier of one user, and a stable text naming it."""

    user_key: str
    fields: dict[str, Any]


@dataclass(frozen=True)
class IdentityRule:
    """One way to identify the user; rules are tried in order and the first match wins."""

    kind: str  # external_id, braze_id, email, phone or alias
    source: Source
    transforms: tuple[Transform, ...] = ()
    label: str = ""  # the alias label, for kind alias

    def match(self, document: Document, meta: Meta) -> Identity | None:
        """Return the identity, or None when no path holds a usable scalar."""
        for _, value in self.source.candidates(document, meta):
            text = text_of(value) if not isinstance(value, bool) else None
            if text is None:
                continue
            text = transform_text(text.strip(), self.transforms)
            if text:
                return self._identity(text)
        return None

    def _identity(self, text: str) -> Identity:
        if self.kind == "alias":
            alias = {"alias_name": text, "alias_label": self.label}
            return Identity(f"alias:{self.label}:{text}", {"user_alias": alias})
        return Identity(f"{self.kind}:{text}", {self.kind: text})

    def describe(self) -> str:
        return f"alias '{self.label}'" if self.kind == "alias" else self.kind


def identify(rules: abc.Sequence[IdentityRule], document: Document, meta: Meta) -> Identity:
    """Apply the first identity rule that matches, or raise MappingFailure."""
    for rule in rules:
        identity = rule.match(document, meta)
        if identity is not None:
            return identity
    raise no_identity(rules)


def no_identity(rules: abc.Sequence[IdentityRule]) -> MappingFailure:
    """The failure of a record that none of the identity rules matches."""
    tried = ", ".join(rule.describe() for rule in rules)
    return MappingFailure("map", f"no identity: no rule found a usable value ({tried})")


@dataclass(frozen=True)
class Condition:
    """One test of a filter: a path's text equals, starts with, ... one of the operands."""

    source: Source
    test: str  # equals, starts_with, ends_with, contains, matches or exists
    operands: tuple[str, ...] = ()  # casefolded
    pattern: re.Pattern[str] | None = None
    exists: bool = True

    def holds(self, document: Document, meta: Meta) -> bool:
        found = self.source.first(document, meta)
        if self.test == "exists":
            return (found is not None) == self.exists
        return found is not None and self.holds_for(found[1])

    def holds_for(self, value: Any) -> bool:
        """Whether the test holds for a value the source found (any element of a list)."""
        values = value if isinstance(value, list) else [value]
        return any(self._passes(one) for one in values)

    def _passes(self, value: Any) -> bool:
        text = text_of(value)
        if text is None:
            return False
        text = text.strip()
        if self.pattern is not None:
            return self.pattern.search(text) is not None
        folded = text.casefold()
        if self.test == "equals":
            return folded in self.operands
        if self.test == "starts_with":
            return any(folded.startswith(operand) for operand in self.operands)
        if self.test == "ends_with":
            return any(folded.endswith(operand) for operand in self.operands)
        return any(operand in folded for operand in self.operands)


@dataclass(frozen=True)
class Filter:
    """Drops a record on purpose when all of its conditions hold."""

    name: str
    conditions: tuple[Condition, ...]

    def drops(self, document: Document, meta: Meta) -> bool:
        return all(condition.holds(document, meta) for condition in self.conditions)


@dataclass(frozen=True)
class EventRule:
    """A custom event sent with every mapped record: its name, time and properties."""

    name: str
    time: FieldRule
    properties: tuple[FieldRule, ...] = ()

    def event(self, document: Document, meta: Meta) -> dict[str, Any]:
        """Build the event object (without the identity)."""
        event: dict[str, Any] = {"name": self.name, "time": self.time.value(document, meta)}
        properties = _values(self.properties, document, meta)
        if properties:
            event["properties"] = properties
        return event


@dataclass(frozen=True)
class Profile:
    """A complete set of rules, chosen by the record's source label or content id."""

    name: str
    identity: tuple[IdentityRule, ...]
    filters: tuple[Filter, ...] = ()
    attributes: tuple[FieldRule, ...] = ()
    events: tuple[EventRule, ...] = ()
    sources: frozenset[str] = frozenset()
    content_ids: frozenset[str] = frozenset()

    def selects(self, source: str, content_id: str | None) -> bool:
        """Say whether this profile applies; each given `when` condition must hold."""
        if self.sources and source not in self.sources:
            return False
        if self.content_ids and content_id not in self.content_ids:
            return False
        return bool(self.sources or self.content_ids)

    def dropping_filter(self, document: Document, meta: Meta) -> str | None:
        """Return the name of the first filter that drops the record, if any."""
        for rule in self.filters:
            if rule.drops(document, meta):
                return rule.name
        return None

    def attribute_values(self, document: Document, meta: Meta) -> dict[str, Any]:
        return _values(self.attributes, document, meta)

    def event_values(self, document: Document, meta: Meta) -> tuple[dict[str, Any], ...]:
        return tuple(rule.event(document, meta) for rule in self.events)


def _values(rules: abc.Iterable[FieldRule], document: Document, meta: Meta) -> dict[str, Any]:
    values = {}
    for rule in rules:
        value = rule.value(document, meta)
        if value is not MISSING:
            values[rule.name] = value
    return values
