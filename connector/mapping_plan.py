"""A profile's rules compiled once into closures: the way every record of that profile is mapped.

`compile_plan()` turns a `Profile` (see mapping_rules) into a `Plan`, a function from a parsed
lead (a dict) to what `Mapping.apply` returns. The closures take the common way through each
rule and build nothing per record but the results. Where a record leaves that way (a value that
cannot be typed, a required value missing, a first identity candidate that is not usable text)
the rule's own method is asked instead: the rules stay the reference, so results and failure
reasons are theirs by construction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from connector.mapping_paths import MISSING
from connector.mapping_reads import UNSET, Document, Meta, Reader, Reads
from connector.mapping_results import BrazeUpdate, Filtered
from connector.mapping_rules import (
    Condition,
    EventRule,
    FieldRule,
    Filter,
    IdentityRule,
    Profile,
    no_identity,
)
from connector.transforms import (
    CONVERTERS,
    MAX_TEXT,
    CoercionError,
    Transform,
    text_of,
    text_steps,
    to_array,
    to_string,
    transform_text,
)

Test = Callable[[Document, Meta], bool]
Found = tuple[str, dict[str, Any]]  # a user key and the identity fields
Plan = Callable[[Document, str, int | None], BrazeUpdate | Filtered]


def compile_plan(profile: Profile) -> Plan:
    """Return a function mapping a lead as `profile` says; the same as applying its rules."""
    name, reads = profile.name, Reads(profile)
    dropping = _dropping(profile.filters, reads)
    identify = _identifier(profile.identity, reads)
    attributes = _values(profile.attributes, reads)
    events = tuple(_event(rule, reads) for rule in profile.events)
    keys = {"user_alias" if rule.kind == "alias" else rule.kind for rule in profile.identity}
    shadowed = any(rule.name in keys for rule in profile.attributes)

    def plan(document: Document, source: str, received_at_ms: int | None) -> BrazeUpdate | Filtered:
        meta = {"source": source, "received_at": received_at_ms, "profile": name}
        dropped_by = dropping(document, meta)
        if dropped_by is not None:
            return Filtered(dropped_by)
        user_key, identity = identify(document, meta)
        values = attributes(document, meta)
        if shadowed:  # an attribute named like the identity field gives way to it
            for field in identity:
                values.pop(field, None)
        if "user_alias" in identity:
            # Braze creates an alias-only profile only when told to; events alone never do.
            values["_update_existing_only"] = False
        found = tuple([event(document, meta) for event in events])
        return BrazeUpdate(user_key, identity, values, found)

    return plan


# --- attributes, event properties --------------------------------------------------------------


def _values(rules: Sequence[FieldRule], reads: Reads) -> Callable[[Document, Meta], dict[str, Any]]:
    """Return the values of the rules that find one, by name, in the rules' order."""
    named = tuple((rule.name, _field(rule, reads)) for rule in rules)

    def values(document: Document, meta: Meta) -> dict[str, Any]:
        found = {}
        for name, value_of in named:
            value = value_of(document, meta)
            if value is not MISSING:
                found[name] = value
        return found

    return values


def _field(rule: FieldRule, reads: Reads) -> Reader:
    """Return `rule.value()`; the rule itself says why when a value is missing or wrong."""
    fixed, required = rule.fixed, rule.required
    if rule.source is None:
        return lambda document, meta: fixed
    first, convert = reads.reader(rule.source), _converter(rule.kind, rule.transforms, rule.split)
    slot = reads.typed_slot(rule)
    if slot is not None:
        return _shared_field(rule, slot, first, convert)
    if rule.kind == "string" and not rule.transforms:
        return _text_field(rule, first)

    def value(document: Document, meta: Meta) -> Any:
        raw = first(document, meta)
        if raw is MISSING:
            return rule.value(document, meta) if required else fixed
        try:
            return convert(raw)
        except CoercionError:
            return rule.value(document, meta)  # raises the failure, naming the path

    return value


def _text_field(rule: FieldRule, first: Reader) -> Reader:
    """`rule.value()` for text without transforms, the most common field: text as it is."""
    fixed, required = rule.fixed, rule.required

    def value(document: Document, meta: Meta) -> Any:
        raw = first(document, meta)
        if type(raw) is str:
            return raw if len(raw) <= MAX_TEXT else raw[:MAX_TEXT]
        if raw is MISSING:
            return rule.value(document, meta) if required else fixed
        try:
            return to_string(raw)
        except CoercionError:
            return rule.value(document, meta)  # raises the failure, naming the path

    return value


def _shared_field(
    rule: FieldRule, slot: str, first: Reader, convert: Callable[[Any], Any]
) -> Reader:
    """`rule.value()` for fields typed alike: the typed value is kept in the record's slot."""
    fixed, required = rule.fixed, rule.required

    def value(document: Document, meta: Meta) -> Any:
        found = meta.get(slot, UNSET)
        if found is UNSET:
            found = first(document, meta)
            if found is not MISSING:
                try:
                    found = convert(found)
                except CoercionError:
                    return rule.value(document, meta)  # raises the failure, naming the path
            meta[slot] = found
        if found is MISSING:
            return rule.value(document, meta) if required else fixed
        return found

    return value


def _converter(
    kind: str, transforms: tuple[Transform, ...], split: str | None
) -> Callable[[Any], Any]:
    """`coerce(transform_text(raw, transforms), kind, split)` as one function."""
    convert = partial(to_array, split=split) if kind == "array" else CONVERTERS[kind]
    if not transforms:
        return convert
    return lambda raw: convert(transform_text(raw, transforms))


def _event(rule: EventRule, reads: Reads) -> Callable[[Document, Meta], dict[str, Any]]:
    """Return `rule.event()`."""
    name, time, properties = rule.name, _field(rule.time, reads), _values(rule.properties, reads)

    def event(document: Document, meta: Meta) -> dict[str, Any]:
        built: dict[str, Any] = {"name": name, "time": time(document, meta)}
        values = properties(document, meta)
        if values:
            built["properties"] = values
        return built

    return event


# --- identity ----------------------------------------------------------------------------------


def _identifier(rules: tuple[IdentityRule, ...], reads: Reads) -> Callable[[Document, Meta], Found]:
    """Return the user key and identity fields of the first rule that matches, as `identify`."""
    matchers = tuple(_matcher(rule, reads) for rule in rules)

    def identify(document: Document, meta: Meta) -> Found:
        for match in matchers:
            found = match(document, meta)
            if found is not None:
                return found
        raise no_identity(rules)

    return identify


def _matcher(rule: IdentityRule, reads: Reads) -> Callable[[Document, Meta], Found | None]:
    """Return `rule.match()`: the first candidate decides unless it is not usable text."""
    first, shape, identity = reads.reader(rule.source), text_steps(rule.transforms), _identity(rule)

    def match(document: Document, meta: Meta) -> Found | None:
        value = first(document, meta)
        if value is MISSING:
            return None
        if type(value) is str:
            text = shape(value.strip())
            if text:
                return identity(text)
        found = rule.match(document, meta)  # numbers, or a later candidate: the rule's own way
        return None if found is None else (found.user_key, found.fields)

    return match


def _identity(rule: IdentityRule) -> Callable[[str], Found]:
    """What `IdentityRule._identity` gives, as a user key and fields."""
    kind, label = rule.kind, rule.label
    if kind == "alias":
        return lambda text: (
            f"alias:{label}:{text}",
            {"user_alias": {"alias_name": text, "alias_label": label}},
        )
    prefix = f"{kind}:"
    return lambda text: (prefix + text, {kind: text})


# --- filters -----------------------------------------------------------------------------------


def _dropping(filters: tuple[Filter, ...], reads: Reads) -> Callable[[Document, Meta], str | None]:
    """Return `Profile.dropping_filter()`: the name of the first filter whose tests all hold."""
    compiled = tuple(
        (rule.name, tuple(_test(condition, reads) for condition in rule.conditions))
        for rule in filters
    )

    def dropping(document: Document, meta: Meta) -> str | None:
        for name, tests in compiled:
            for test in tests:
                if not test(document, meta):
                    break
            else:
                return name
        return None

    return dropping


def _test(condition: Condition, reads: Reads) -> Test:
    """Return `condition.holds()`."""
    first = reads.reader(condition.source)
    if condition.test == "exists":
        exists = condition.exists
        return lambda document, meta: (first(document, meta) is not MISSING) == exists
    passes = _passes(condition)

    def test(document: Document, meta: Meta) -> bool:
        value = first(document, meta)
        if value is MISSING:
            return False
        if isinstance(value, list):
            return any(map(passes, value))
        return passes(value)

    return test


def _passes(condition: Condition) -> Callable[[Any], bool]:
    """Return `condition._passes()`: a scalar's trimmed text tested against the operands."""
    check = _check(condition)

    def passes(value: Any) -> bool:
        text = value if type(value) is str else text_of(value)
        return text is not None and check(text.strip())

    return passes


def _check(condition: Condition) -> Callable[[str], bool]:
    pattern, operands = condition.pattern, condition.operands
    if pattern is not None:
        return lambda text: pattern.search(text) is not None
    if condition.test == "equals":
        return lambda text: text.casefold() in operands
    if condition.test == "starts_with":
        return lambda text: text.casefold().startswith(operands)
    if condition.test == "ends_with":
        return lambda text: text.casefold().endswith(operands)

    def contains(text: str) -> bool:
        folded = text.casefold()
        return any(operand in folded for operand in operands)

    return contains
