"""The worker's mapping fast path: a profile's plan run natively, from the JSON body on.

`compile_native()` describes a profile's plan as plain tuples for `connector._native` (a Rust
extension in `native/`), which parses a body and runs the same steps, in the same order, as the
plan `connector.mapping_plan` writes in Python. It covers what that plan does inline: key paths
and selectors over dicts and lists, text, numbers, integers and times in their common forms,
filters on text, identity text with its transforms. For anything else in a record (a value to
coerce, a walker, a failure to report, a case fold beyond ASCII) it declines, returning None,
and the record is mapped in Python: results and failure reasons stay the rules' own. What it
makes is a `BrazeUpdate` whose /users/track objects are JSON already (bytes).
`tests/test_mapping_native.py` holds the two to each other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from connector.mapping_paths import MISSING, Key, Path, Select
from connector.mapping_reads import keyed
from connector.mapping_results import BrazeUpdate, Filtered
from connector.mapping_rules import Condition, FieldRule, IdentityRule, Profile, Source

try:
    from connector import _native
except ImportError:  # not built: every record is mapped in Python
    _native = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from connector._native import NativePlan

_TESTS = ("exists", "equals", "starts_with", "ends_with", "contains")
_TYPES = ("string", "number", "integer", "time")  # typed natively; others are Python's


def compile_native(profile: Profile) -> NativePlan | None:
    """The profile's native plan, or None when the extension is not built."""
    if _native is None:
        return None
    return _native.NativePlan(_Describer(profile).plan(), BrazeUpdate, Filtered)


class _Describer:
    """Writes a profile's plan as tuples; sources are numbered as the Python plan reads them."""

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self.sources: dict[Source, int] = {}

    def plan(self) -> tuple[Any, ...]:
        profile = self.profile
        filters = [
            (rule.name, [self.condition(condition) for condition in rule.conditions])
            for rule in profile.filters
        ]
        identity = [self.identity(rule) for rule in profile.identity]
        attributes = [self.field(rule) for rule in profile.attributes]
        events = [
            (event.name, self.field(event.time), [self.field(rule) for rule in event.properties])
            for event in profile.events
        ]
        keys = {"user_alias" if rule.kind == "alias" else rule.kind for rule in profile.identity}
        pop_identity = any(rule.name in keys for rule in profile.attributes)
        sources = [self.paths(source) for source in self.sources]  # in numbering order
        return (
            profile.name,
            sources,
            filters,
            identity,
            attributes,
            pop_identity,
            "user_alias" in keys,
            events,
        )

    def source(self, source: Source) -> int:
        return self.sources.setdefault(source, len(self.sources))

    def paths(self, source: Source) -> list[tuple[str, list[tuple[str, str, str]]]] | None:
        if not all(keyed(path) for path in source.paths):
            return None  # read by the rule's own way: declined
        return [_path(path) for path in source.paths]

    def condition(self, condition: Condition) -> tuple[int, str, list[str], bool]:
        test = condition.test if condition.pattern is None else "python"
        test = test if test in _TESTS else "python"
        source = self.source(condition.source)
        return source, test, list(condition.operands), condition.exists

    def identity(self, rule: IdentityRule) -> tuple[str, int, list[tuple[str, str]], str]:
        transforms = [(step.name, step.argument) for step in rule.transforms]
        return rule.kind, self.source(rule.source), transforms, rule.label

    def field(self, rule: FieldRule) -> tuple[str, str, int, bool, bytes | None, bool]:
        source = -1 if rule.source is None else self.source(rule.source)
        # Typed natively only without transforms; a value found for any other is Python's.
        native = rule.kind in _TYPES and not rule.transforms
        fixed = rule.fixed is not MISSING
        value = constant_json(rule.fixed) if fixed else None
        return rule.name, rule.kind if native else "python", source, fixed, value, rule.required


def constant_json(value: Any) -> bytes | None:
    """A constant as the JSON the native plan writes for it, or None (a record that needs it is
    Python's) when orjson would not read that JSON back as the same value, types included."""
    try:
        written = orjson.dumps(value)
    except orjson.JSONEncodeError:
        return None
    return written if _same(orjson.loads(written), value) else None


def _same(read: Any, value: Any) -> bool:
    if type(read) is not type(value):
        return False
    if type(value) is list:
        return len(read) == len(value) and all(map(_same, read, value))
    if type(value) is dict:
        return list(read) == list(value) and all(map(_same, read.values(), value.values()))
    return bool(read == value)


def _path(path: Path) -> tuple[str, list[tuple[str, str, str]]]:
    if path.meta is not None:
        return (path.meta if path.meta in ("source", "received_at") else "profile"), []
    steps = []
    for step in path.steps:
        if isinstance(step, Key):
            steps.append(("key", step.name, ""))
        elif isinstance(step, Select):
            steps.append(("select", step.field, step.value))
        else:
            steps.append(("walk", "", ""))
    return "document", steps
