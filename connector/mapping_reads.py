"""Reading a lead's sources: `Source.first()` as a function of a dict lead giving the value alone.

Compiled plans (see mapping_plan) write their reads inline; `reader()` serves the rest, such as
choosing a profile by content id.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

from connector.mapping_paths import MISSING, Key, Path, walker
from connector.mapping_rules import FieldRule, Source, has_value

Document = dict[str, Any]
Meta = dict[str, Any]
Reader = Callable[[Document, Meta], Any]

# Values of these types always hold; text must not be blank and lists not empty.
SOLID = frozenset({int, float, bool, dict})


def reader(source: Source) -> Reader:
    """Return the value `source.first()` finds, without its path, or MISSING."""
    if not all(keyed(path) for path in source.paths):
        return lambda document, meta: first_by_rule(source, document, meta)
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
            elif type(value) in SOLID or has_value(value):
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


def keyed(path: Path) -> bool:
    """Whether a path is a fact or starts with a key, as every path a mapping file has does."""
    return path.meta is not None or (bool(path.steps) and isinstance(path.steps[0], Key))


def first_by_rule(source: Source, document: Document, meta: Meta) -> Any:
    """What `source.first()` finds, without its path, or MISSING."""
    found = source.first(document, meta)
    return MISSING if found is None else found[1]


def typed_key(rule: FieldRule) -> Hashable:
    """Fields with equal keys find equal typed values in a record; arrays, being lists, never."""
    if rule.kind == "array" or rule.source is None:
        return id(rule)
    return (rule.source, rule.kind, rule.transforms, rule.split)
