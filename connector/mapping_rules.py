"""The rules of a mapping file, each compiled once into the function that applies it to a lead.

A profile compiles into one function `(lead, source, received_at_ms)` giving a `BrazeUpdate` or
`Filtered`, or raising `MappingFailure`: its rules' functions, made at load, called in order.
Nothing here quotes a value from the lead in a message: failures name the rule and the path, so
reasons can go to the dead-letter topic without personal data in them.
"""

from __future__ import annotations

import re
from collections import abc
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

from connector.mapping_paths import MISSING, Path
from connector.mapping_results import BrazeUpdate, Filtered
from connector.transforms import (
    MAX_TEXT,
    CoercionError,
    Transform,
    converter,
    shaper,
    text_of,
    to_integer,
    to_number,
    to_string,
)

Document = abc.Mapping[str, Any]
# The record's facts ($source, $received_at, $profile), and the typed values rules share.
Meta = dict[Any, Any]
Reader = Callable[[Document, Meta], Any]  # a value, or MISSING
Test = Callable[[Document, Meta], bool]
Run = Callable[[Document, str, "int | None"], "BrazeUpdate | Filtered"]

# Values of these types always hold; text must not be blank and lists not empty.
_SOLID = frozenset({int, float, bool, dict})
_UNSET = object()  # a shared value not computed yet for this record


class MappingFailure(Exception):
    """A record that cannot be mapped; it belongs on the dead-letter topic with this reason."""

    def __init__(self, stage: str, reason: str) -> None:
        super().__init__(reason)
        self.stage = stage
        self.reason = reason

    def __repr__(self) -> str:
        return f"MappingFailure(stage={self.stage!r}, reason={self.reason!r})"


def _typed(
    convert: Callable[[Any], Any] | None,
    failed: Callable[[Path, CoercionError], NoReturn] | None,
) -> Callable[[Path, Any], Any] | None:
    """`convert` of a value found at a path, telling `failed` (which raises) where it cannot."""
    if convert is None:
        return None
    assert failed is not None  # a conversion always says how it fails

    def typed(path: Path, value: Any) -> Any:
        try:
            return convert(value)
        except CoercionError as exc:
            failed(path, exc)

    return typed


def has_value(value: Any) -> bool:
    """Whether a path found a value: not missing, blank text or an empty list."""
    if value is MISSING or value == []:
        return False
    return not isinstance(value, str) or bool(value.strip())


@dataclass(frozen=True)
class Source:
    """Paths tried in order; the first that holds a value wins."""

    paths: tuple[Path, ...]

    def compile(
        self,
        convert: Callable[[Any], Any] | None = None,
        failed: Callable[[Path, CoercionError], NoReturn] | None = None,
    ) -> Reader:
        """A function giving the first value a path holds (see has_value), or MISSING.

        With `convert`, the value found is given converted; when it cannot be, `failed` is told
        the path that held it, and raises.
        """
        probes = tuple((path, *path.probe()) for path in self.paths)
        solid, typed = _SOLID, _typed(convert, failed)
        # What the common conversions give back as it is, known without calling them.
        text_as_is, int_as_is = convert is to_string, convert in (to_number, to_integer)

        def first(document: Document, meta: Meta) -> Any:
            # Each path's first step written out: most leads lack most of the places tried.
            for path, name, fact, then in probes:
                value = (meta if fact else document).get(name)
                if value is None:
                    continue
                if then is not None:
                    value = then(value)
                kind = type(value)
                if kind is str:  # the common case, without has_value's checks
                    if not value.strip():
                        continue
                    if text_as_is and len(value) <= MAX_TEXT:
                        return value
                elif kind is int and int_as_is:
                    return value
                elif kind not in solid and not has_value(value):
                    continue
                return value if typed is None else typed(path, value)
            return MISSING

        return first

    def __str__(self) -> str:
        return ", ".join(path.text for path in self.paths)


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

    def typing(self) -> Reader:
        """A function giving the source's value typed as the rule says, or MISSING when there
        is none; a value that cannot be typed fails, naming this rule and the path."""
        assert self.source is not None  # constants are never typed per record
        label = self.label

        def failed(path: Path, error: CoercionError) -> NoReturn:
            raise MappingFailure("map", f"{label}: the value at {path} {error}") from None

        return self.source.compile(converter(self.kind, self.transforms, self.split), failed)

    def compile(self) -> Reader:
        """A function giving the rule's value, or MISSING when it is absent and optional (a
        profile compiles its rules together, to share what they type alike: _Sharing)."""
        fixed = self.fixed
        if self.source is None:
            return lambda document, meta: fixed
        typed, missing = self.typing(), self.missing()
        if missing is None:
            return typed

        def value(document: Document, meta: Meta) -> Any:
            found = typed(document, meta)
            return missing() if found is MISSING else found

        return value

    def missing(self) -> Callable[[], Any] | None:
        """What the rule gives when its source finds nothing: the default, or a failure when
        the value is required; None when it then has no value."""
        fixed = self.fixed
        if self.required:
            reason = f"{self.label} is required but {self._nowhere()}"

            def required() -> Any:
                raise MappingFailure("map", reason)

            return required
        return None if fixed is MISSING else lambda: fixed

    def typed_key(self) -> Hashable:
        """Rules with equal keys type equal values from a record; arrays, being lists, never."""
        if self.kind == "array" or self.source is None:
            return id(self)
        return (self.source, self.kind, self.transforms, self.split)

    def _nowhere(self) -> str:
        if self.source is not None and len(self.source.paths) == 1:
            return f"{self.source} holds no value"
        return f"none of {self.source} holds a value"


Identity = tuple[str, dict[str, Any]]  # a stable text naming the user, and Braze's fields
Reads = Callable[[Source], Reader]  # compiles where a source's first value is read
_Usable = TypeVar("_Usable")
Key = Callable[[Document, Meta], "str | None"]  # a key found in a lead, as text, or None


@dataclass(frozen=True)
class IdentityRule:
    """One way to identify the user; rules are tried in order and the first match wins."""

    kind: str  # external_id, braze_id, email, phone or alias
    source: Source
    transforms: tuple[Transform, ...] = ()
    label: str = ""  # the alias label, for kind alias

    def compile(self, read: Reads = Source.compile) -> Callable[[Document, Meta], Identity | None]:
        """A function giving the identity from the first path holding usable text, or None;
        `read` compiles the source's first value, as the profile does."""
        shape, kind, label = shaper(self.transforms), self.kind, self.label
        prefix = f"alias:{label}:" if kind == "alias" else f"{kind}:"

        def usable(value: Any) -> Identity | None:
            text = value if type(value) is str else None if type(value) is bool else text_of(value)
            if text is None:  # a list or an object
                return None
            text = shape(text.strip())
            if not text:
                return None
            if kind == "alias":
                return prefix + text, {"user_alias": {"alias_name": text, "alias_label": label}}
            return prefix + text, {kind: text}

        return first_usable(self.source, read, usable)

    def describe(self) -> str:
        return f"alias '{self.label}'" if self.kind == "alias" else self.kind


def key_text(value: Any) -> str | None:
    """A scalar as trimmed text, usable as a key; lists, objects, booleans and blanks are not."""
    if type(value) is str:  # the common case, first
        return value.strip() or None
    text = None if isinstance(value, bool) else text_of(value)
    if text is None:
        return None
    return text.strip() or None


def key_reader(source: Source, read: Reads = Source.compile) -> Key:
    """A function giving the first value of the source's paths usable as a key (see key_text),
    or None; `read` compiles the source's first value, as the profile does."""
    return first_usable(source, read, key_text)


def first_usable(
    source: Source, read: Reads, usable: Callable[[Any], _Usable | None]
) -> Callable[[Document, Meta], _Usable | None]:
    """A function giving `usable()` of the first value of the source's paths it accepts, or
    None; `read` compiles the source's first value, as the profile does."""
    first = read(source)
    candidates = tuple(Source((path,)).compile() for path in source.paths)

    def found_in(document: Document, meta: Meta) -> _Usable | None:
        value = first(document, meta)
        if value is MISSING:
            return None
        found = usable(value)  # the first candidate, which most often decides
        if found is not None:
            return found
        for candidate in candidates:  # each path holding a value, in order: lists, objects,
            value = candidate(document, meta)  # blanks are passed over
            if value is not MISSING and (found := usable(value)) is not None:
                return found
        return None

    return found_in


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

    def compile(self, read: Reads = Source.compile) -> Test:
        """A function saying whether the condition holds for a lead; `read` compiles the
        source's first value, as the profile does."""
        read_value, exists = read(self.source), self.exists
        if self.test == "exists":
            return lambda document, meta: (read_value(document, meta) is not MISSING) is exists
        passes = self._passes()

        def holds(document: Document, meta: Meta) -> bool:
            value = read_value(document, meta)
            if type(value) is str:  # the common case, first
                return passes(value.strip())
            if value is MISSING:
                return False
            for one in value if isinstance(value, list) else (value,):
                text = text_of(one)
                if text is not None and passes(text.strip()):
                    return True  # any element of a list will do
            return False

        return holds

    def _passes(self) -> Callable[[str], bool]:
        """The test of trimmed text."""
        if self.pattern is not None:
            search = self.pattern.search
            return lambda text: search(text) is not None
        operands = self.operands
        if self.test == "equals":
            return lambda text: text.casefold() in operands
        if self.test == "starts_with":
            return lambda text: text.casefold().startswith(operands)
        if self.test == "ends_with":
            return lambda text: text.casefold().endswith(operands)

        def contains(text: str) -> bool:
            folded = text.casefold()
            return any(operand in folded for operand in operands)

        return contains


@dataclass(frozen=True)
class Filter:
    """Drops a record on purpose when all of its conditions hold."""

    name: str
    conditions: tuple[Condition, ...]

    def compile(self, read: Reads = Source.compile) -> Test:
        """A function saying whether the filter drops a lead."""
        tests = tuple(condition.compile(read) for condition in self.conditions)
        if len(tests) == 1:
            return tests[0]
        return lambda document, meta: all(test(document, meta) for test in tests)


Fields = Callable[[abc.Iterable["FieldRule"]], Callable[[Document, Meta], dict[str, Any]]]
Event = Callable[[Document, Meta], dict[str, Any]]


@dataclass(frozen=True)
class EventRule:
    """A custom event sent with every mapped record: its name, time and properties."""

    name: str
    time: FieldRule
    properties: tuple[FieldRule, ...] = ()
    dedupe: Source | None = None  # where the de-duplication key is; None: sent every time

    def compile(self, values: Fields) -> Event:
        """A function building the event object (without the identity); `values` compiles its
        field rules as the profile does."""
        name, fields = self.name, values((self.time, *self.properties))

        def event(document: Document, meta: Meta) -> dict[str, Any]:
            found = fields(document, meta)  # the time (always found, or a failure) first
            built = {"name": name, "time": found.pop("time")}
            if found:
                built["properties"] = found
            return built

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

    def compile(self) -> Run:
        """The profile as one function: filters, identity, attributes, events, in this order."""
        compiler = _Sharing(self)
        name, read = self.name, compiler.read
        dropping = tuple((rule.name, rule.compile(read)) for rule in self.filters)
        identify = _identifier(tuple(rule.compile(read) for rule in self.identity), self.identity)
        attributes = compiler.values(self.attributes)
        made = _all(tuple(rule.compile(compiler.values) for rule in self.events))
        dedupe_keys = _keys(
            tuple(_no_key if e.dedupe is None else key_reader(e.dedupe, read) for e in self.events)
        )
        keys = {"user_alias" if rule.kind == "alias" else rule.kind for rule in self.identity}
        # An attribute named like the identity field gives way to it.
        clash = any(rule.name in keys for rule in self.attributes)
        # Braze creates an alias-only profile only when told to; events alone never do.
        alias = "user_alias" in keys

        def run(
            document: Document, source: str, received_at_ms: int | None
        ) -> BrazeUpdate | Filtered:
            meta = {"source": source, "received_at": received_at_ms, "profile": name}
            for rule, drops in dropping:
                if drops(document, meta):
                    return Filtered(rule)
            user_key, fields = identify(document, meta)
            values = attributes(document, meta)
            if clash:
                for field in fields:
                    values.pop(field, None)
            if alias and "user_alias" in fields:
                values["_update_existing_only"] = False
            events, event_keys = made(document, meta), dedupe_keys(document, meta)
            return BrazeUpdate(user_key, fields, values, events, event_keys)

        return run

    def user_key(self) -> Key:
        """A function giving the user key the identity rules give a lead (as `compile()`'s
        function does), or None when no rule matches; filters and other rules do not run."""
        matches = tuple(rule.compile() for rule in self.identity)

        def user_key(document: Document, meta: Meta) -> str | None:
            for match in matches:
                found = match(document, meta)
                if found is not None:
                    return found[0]
            return None

        return user_key


def _all(
    events: tuple[Callable[[Document, Meta], dict[str, Any]], ...],
) -> Callable[[Document, Meta], tuple[dict[str, Any], ...]]:
    """The events' objects, in order."""
    if len(events) == 1:  # the common case, without a loop's cost
        (event,) = events
        return lambda document, meta: (event(document, meta),)

    def all_events(document: Document, meta: Meta) -> tuple[dict[str, Any], ...]:
        made = []
        for event in events:
            made.append(event(document, meta))
        return tuple(made)

    return all_events


def _no_key(document: Document, meta: Meta) -> None:
    """The key of an event sent every time."""
    return None


def _keys(keys: tuple[Key, ...]) -> Callable[[Document, Meta], tuple[str | None, ...]]:
    """The events' de-duplication keys, in order."""
    if all(key is _no_key for key in keys):  # nothing to read: the same tuple for every lead
        none = (None,) * len(keys)
        return lambda document, meta: none
    if len(keys) == 1:  # the common case, without a loop's cost
        (key,) = keys
        return lambda document, meta: (key(document, meta),)
    return lambda document, meta: tuple([key(document, meta) for key in keys])


def _identifier(
    matches: tuple[Callable[[Document, Meta], Identity | None], ...],
    rules: tuple[IdentityRule, ...],
) -> Callable[[Document, Meta], Identity]:
    """The identity from the first rule that matches, or MappingFailure."""
    failure = no_identity(rules)

    def identify(document: Document, meta: Meta) -> Identity:
        for match in matches:
            found = match(document, meta)
            if found is not None:
                return found
        raise MappingFailure(failure.stage, failure.reason)

    return identify


class _Sharing:
    """Compiles a profile's reads and field rules; what several rules read, or type alike,
    from one source is computed once per record, kept in the record's `meta` under a number.

    Field rules run in the profile's order, each of them for every record mapped, so the first
    to type a shared value stores it and the others load it; one that cannot be typed fails
    naming that first rule, as it would without sharing. Reads by filters and identity rules,
    which not every record runs, are kept at whichever first use.
    """

    def __init__(self, profile: Profile) -> None:
        reads: list[Hashable] = [rule.source for rule in profile.identity]
        reads += [condition.source for rule in profile.filters for condition in rule.conditions]
        reads += [event.dedupe for event in profile.events if event.dedupe is not None]
        fields = [*profile.attributes]
        for event in profile.events:
            fields += [event.time, *event.properties]
        keys = reads + [rule.typed_key() for rule in fields if rule.source is not None]
        self.slots: dict[Hashable, int] = {}  # what is shared -> its number in a record's meta
        for key in keys:
            if keys.count(key) > 1:
                self.slots.setdefault(key, len(self.slots))
        self.kept: dict[Hashable, Reader] = {}
        self.typed: set[Hashable] = set()  # shared typed values a rule compiled so far stores

    def read(self, source: Source) -> Reader:
        """The first value a source holds, as it is."""
        slot = self.slots.get(source)
        if slot is None:
            return source.compile()
        reader = self.kept.get(source)
        if reader is None:
            reader = self.kept[source] = _kept(slot, source.compile())
        return reader

    def values(self, rules: abc.Iterable[FieldRule]) -> Callable[[Document, Meta], dict[str, Any]]:
        """A function giving `{name: value}` for the rules (the next in the profile's order)
        that find a value, in their order; a rule typing a shared value has its `compile()`
        written out in the loop, to store or load that value."""
        steps = tuple(
            (rule.name, *self._typing(rule), rule.missing())
            if rule.typed_key() in self.slots
            else (rule.name, rule.compile(), None, None, None)
            for rule in rules
        )

        def values(document: Document, meta: Meta) -> dict[str, Any]:
            found = {}
            for name, read, store, load, missing in steps:
                value = meta[load] if read is None else read(document, meta)
                if store is not None:
                    meta[store] = value
                if value is MISSING:
                    if missing is None:
                        continue
                    value = missing()
                found[name] = value
            return found

        return values

    def _typing(self, rule: FieldRule) -> tuple[Reader | None, int | None, int | None]:
        """How a rule typing a shared value finds it: `(read, store, None)` for the first,
        which keeps it in slot `store`, and `(None, None, load)` for the others."""
        key = rule.typed_key()
        slot = self.slots[key]
        if key in self.typed:
            return None, None, slot
        self.typed.add(key)
        return rule.typing(), slot, None


def _kept(slot: int, read: Reader) -> Reader:
    """`read`, computed once per record and kept in its meta under `slot`."""

    def kept(document: Document, meta: Meta) -> Any:
        value = meta.get(slot, _UNSET)
        if value is _UNSET:
            value = meta[slot] = read(document, meta)
        return value

    return kept
