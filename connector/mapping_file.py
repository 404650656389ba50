"""Check a mapping file against its JSON Schema and for what no schema can say, then compile it.

The second kind: path syntax, Braze's naming rules, constants that must fit their type.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any, NoReturn, TypeVar

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

from connector.errors import ConfigError
from connector.mapping_paths import MISSING, Path, PathSyntaxError, parse_path
from connector.mapping_rules import (
    Condition,
    EventRule,
    FieldRule,
    Filter,
    IdentityRule,
    Profile,
    Source,
)
from connector.mapping_yaml import Lines, Location, MappingFileError, describe, read_yaml
from connector.transforms import CoercionError, Transform, converter, text_of

# Shipped inside the package so an installed wheel finds it; a byte-identical copy of the
# canonical `schemas/mapping.schema.json` (tests/test_deploy_container.py keeps them equal).
SCHEMA_PATH: Traversable = resources.files("connector").joinpath("mapping.schema.json")
FALLBACK_PROFILE = "default"
DEFAULT_CONTENT_ID_PATHS = "calc_id"
DEFAULT_EVENT_TIME = "$received_at"
NO_KEY = "none"  # the `dedupe_key` of an event sent every time
TESTS = ("equals", "starts_with", "ends_with", "contains", "matches", "exists")
IDENTIFIERS = frozenset({"external_id", "user_alias", "braze_id"})
RESERVED_ATTRIBUTES = IDENTIFIERS | {"_update_existing_only", "_merge_objects"}
RESERVED_PROPERTIES = frozenset({"time", "event_name"})
MAX_NAME = 255
MAX_ALIAS_BYTES = 236

T = TypeVar("T")


@dataclass(frozen=True)
class CompiledMapping:
    """A mapping file's profiles in order, the top-level fallback, where content ids are, and
    where the lead id is (None: nowhere)."""

    profiles: tuple[Profile, ...]
    fallback: Profile
    content_id: Source
    lead_id: Source | None = None


def compile_mapping(text: str, file: str) -> CompiledMapping:
    """Parse, validate and compile a mapping file's text, or raise MappingFileError."""
    data, lines = read_yaml(text, file)
    compiler = _Compiler(file, lines)
    compiler.check_schema(data)
    compiler.lead_id = compiler.lead_id_source(data)
    return compiler.mapping(data)


# --- the JSON Schema ---------------------------------------------------------------------------


@functools.cache
def schema_validator() -> Any:
    """Return a validator for the mapping schema shipped with the package."""
    try:
        schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read the mapping schema {SCHEMA_PATH}: {exc.strerror}") from None
    return Draft202012Validator(schema)


def _schema_problem(error: ValidationError) -> tuple[Location, str]:
    """Say in one phrase what a schema error means, and where."""
    where: Location = tuple(error.absolute_path)
    rule, instance, expected = error.validator, error.instance, error.validator_value
    if rule == "additionalProperties":
        extra = sorted(set(instance) - set(error.schema.get("properties", {})))[0]
        allowed = ", ".join(error.schema.get("properties", {}))
        return (*where, extra), f"unknown key '{extra}'; allowed here: {allowed}"
    if rule == "required":
        missing = next(key for key in expected if key not in instance)
        return where, f"'{missing}' is missing"
    if rule == "enum":
        what = "type" if where and where[-1] == "type" else "value"
        return where, f"unknown {what} '{instance}'; use one of: {', '.join(map(str, expected))}"
    if rule == "type":
        problem = _type_problem(instance, expected)
        if where and where[-1] == "dedupe_key":
            problem += f"; write {NO_KEY} for an event sent every time"
        return where, problem
    if rule in ("minItems", "minLength", "minProperties"):
        return where, "must not be empty"
    if rule == "maxProperties":
        return where, f"give exactly one key, one of: {', '.join(error.schema['properties'])}"
    if rule == "const":
        return where, f"must be {json.dumps(expected)}"
    return where, error.message[:200]


_KIND_NAMES = {
    "string": "text",
    "array": "a list",
    "object": "a mapping",
    "boolean": "true or false",
    "integer": "a whole number",
    "number": "a number",
}


def _type_problem(instance: Any, expected: str | list[str]) -> str:
    kinds = [
        _KIND_NAMES.get(kind, kind)
        for kind in ([expected] if isinstance(expected, str) else expected)
    ]
    problem = "must be " + (
        kinds[0] if len(kinds) == 1 else f"{', '.join(kinds[:-1])} or {kinds[-1]}"
    )
    if "a mapping" in kinds and isinstance(instance, int | float):
        problem += "; write a constant as {value: ...}"
    return problem


# --- compiling, with the checks the schema cannot make -----------------------------------------


@dataclass(frozen=True)
class _Sections:
    """The rules of the top level or of one profile, before inheritance."""

    identity: tuple[IdentityRule, ...] | None
    filters: dict[str, Filter]
    attributes: dict[str, FieldRule]
    events: dict[str, EventRule]

    def over(self, base: _Sections) -> _Sections:
        """Inherit: named rules merge by name (ours win), the identity list is replaced whole."""
        return _Sections(
            self.identity if self.identity is not None else base.identity,
            base.filters | self.filters,
            base.attributes | self.attributes,
            base.events | self.events,
        )

    def profile(self, name: str, sources: frozenset[str], content_ids: frozenset[str]) -> Profile:
        return Profile(
            name,
            self.identity or (),
            tuple(self.filters.values()),
            tuple(self.attributes.values()),
            tuple(self.events.values()),
            sources,
            content_ids,
        )


class _Compiler:
    """Turns validated data into rules; every refusal names the file, line and rule."""

    def __init__(self, file: str, lines: Lines) -> None:
        self.file = file
        self.lines = lines
        self.lead_id: Source | None = None  # the events' de-duplication key unless they say

    def fail(self, where: Location, problem: str) -> NoReturn:
        line = next(
            (self.lines[where[:n]] for n in range(len(where), -1, -1) if where[:n] in self.lines),
            None,
        )
        raise MappingFileError(self.file, line, describe(where), problem)

    def check_schema(self, data: Any) -> None:
        error = best_match(schema_validator().iter_errors(data))
        if error is not None:
            self.fail(*_schema_problem(error))

    def mapping(self, data: dict[str, Any]) -> CompiledMapping:
        base = self.sections(data, ())
        fallback = base.profile(FALLBACK_PROFILE, frozenset(), frozenset())
        items = data.get("profiles", [])
        self.unique(items, ("profiles",))
        profiles = tuple(self.profile(item, ("profiles", n), base) for n, item in enumerate(items))
        content_id = self.source(
            data.get("content_id_from", DEFAULT_CONTENT_ID_PATHS), ("content_id_from",)
        )
        return CompiledMapping(profiles, fallback, content_id, self.lead_id)

    def lead_id_source(self, data: dict[str, Any]) -> Source | None:
        """Where the lead id is (`lead_id_from`): places in the lead, not facts of the record."""
        if "lead_id_from" not in data:
            return None
        spec, where = data["lead_id_from"], ("lead_id_from",)
        source = self.source(spec, where)
        for n, path in enumerate(source.paths):
            if path.meta is not None:
                at = where if isinstance(spec, str) else (*where, n)
                self.fail(at, f"'{path}' is a fact of the record, not a place in the lead")
        return source

    def profile(self, data: dict[str, Any], where: Location, base: _Sections) -> Profile:
        if data["name"] == FALLBACK_PROFILE:
            self.fail((*where, "name"), f"'{FALLBACK_PROFILE}' names the top-level rules")
        own = self.sections(data, where)
        rules = own.over(base) if data.get("inherit", True) else own
        when = data["when"]
        sources = frozenset(_texts(when.get("source")))
        content_ids = frozenset(text.casefold() for text in _texts(when.get("content_id")))
        return rules.profile(data["name"], sources, content_ids)

    def sections(self, data: dict[str, Any], where: Location) -> _Sections:
        identity = None
        if "identity" in data:
            rules = enumerate(data["identity"])
            identity = tuple(self.identity(rule, (*where, "identity", n)) for n, rule in rules)
        attributes = {
            name: self.attribute(name, spec, (*where, "attributes", name))
            for name, spec in data.get("attributes", {}).items()
        }
        filters = self.named(data.get("filters", []), (*where, "filters"), self.filter)
        events = self.named(data.get("events", []), (*where, "events"), self.event)
        return _Sections(identity, filters, attributes, events)

    def unique(self, items: list[dict[str, Any]], where: Location) -> None:
        seen: set[str] = set()
        for n, item in enumerate(items):
            if item["name"] in seen:
                self.fail((*where, n, "name"), f"the name '{item['name']}' is used twice")
            seen.add(item["name"])

    def named(
        self,
        items: list[dict[str, Any]],
        where: Location,
        build: Callable[[dict[str, Any], Location], T],
    ) -> dict[str, T]:
        self.unique(items, where)
        return {item["name"]: build(item, (*where, n)) for n, item in enumerate(items)}

    # identity ----------------------------------------------------------------------------------

    def identity(self, data: dict[str, Any], where: Location) -> IdentityRule:
        [(kind, spec)] = data.items()
        where = (*where, kind)
        if kind == "alias":
            label = spec["label"]
            if len(label.encode("utf-8")) > MAX_ALIAS_BYTES:
                self.fail((*where, "label"), f"an alias label may have {MAX_ALIAS_BYTES} bytes")
            return IdentityRule(kind, *self.source_and_transforms(spec, where), label)
        if not isinstance(spec, dict):
            return IdentityRule(kind, self.source(spec, where))
        return IdentityRule(kind, *self.source_and_transforms(spec, where))

    def source_and_transforms(
        self, spec: dict[str, Any], where: Location
    ) -> tuple[Source, tuple[Transform, ...]]:
        source = self.source(spec["from"], (*where, "from"))
        return source, self.transforms(spec.get("transform", []))

    def source(self, spec: str | list[str], where: Location) -> Source:
        if isinstance(spec, str):
            return Source((self.path(spec, where),))
        return Source(tuple(self.path(text, (*where, n)) for n, text in enumerate(spec)))

    def path(self, text: str, where: Location) -> Path:
        try:
            return parse_path(text)
        except PathSyntaxError as exc:
            self.fail(where, f"bad path '{text}': {exc}")

    def transforms(self, items: list[str | dict[str, str]]) -> tuple[Transform, ...]:
        steps: list[Transform] = []
        for item in items:
            if isinstance(item, dict):
                [(name, argument)] = item.items()
                steps.append(Transform(name, argument))
            else:
                steps.append(Transform(item))
        return tuple(steps)

    # attributes, event properties --------------------------------------------------------------

    def attribute(self, name: str, spec: Any, where: Location) -> FieldRule:
        if name in RESERVED_ATTRIBUTES:
            self.fail(
                where, f"'{name}' is a Braze identifier or flag; set identities under identity"
            )
        self.check_name(name, where, "attribute")
        return self.field(f"attribute '{name}'", name, spec, where)

    def check_name(self, name: str, where: Location, what: str) -> None:
        if not name.strip():
            self.fail(where, f"an {what} name must not be blank")
        if len(name) > MAX_NAME:
            self.fail(where, f"the {what} name has {len(name)} characters; Braze allows {MAX_NAME}")
        if name.startswith("$"):
            self.fail(
                where, f"an {what} name must not start with '$' (Braze keeps it for operators)"
            )

    def field(
        self, label: str, name: str, spec: Any, where: Location, kind: str = "string"
    ) -> FieldRule:
        short = not isinstance(spec, dict)
        spec = {"from": spec} if short else spec
        kind = spec.get("type", kind)
        self.check_field(spec, kind, where)
        transforms = self.transforms(spec.get("transform", []))
        split = spec.get("split")
        if "value" in spec:
            constant = self.constant(spec["value"], kind, transforms, split, (*where, "value"))
            return FieldRule(label, name, kind, None, constant)
        default = MISSING
        if "default" in spec:
            default = self.constant(spec["default"], kind, transforms, split, (*where, "default"))
        source = self.source(spec["from"], where if short else (*where, "from"))
        required = bool(spec.get("required", False))
        return FieldRule(label, name, kind, source, default, required, transforms, split)

    def check_field(self, spec: dict[str, Any], kind: str, where: Location) -> None:
        if ("from" in spec) == ("value" in spec):
            self.fail(where, "give either 'from' (paths in the lead) or 'value' (a constant)")
        if "split" in spec and kind != "array":
            self.fail((*where, "split"), "'split' applies only to type array")
        if spec.get("required") and ("default" in spec or "value" in spec):
            self.fail((*where, "required"), "a value with a default or a constant is never missing")

    def constant(
        self,
        value: Any,
        kind: str,
        transforms: tuple[Transform, ...],
        split: str | None,
        where: Location,
    ) -> Any:
        try:
            return converter(kind, transforms, split)(value)
        except CoercionError as exc:
            self.fail(where, f"this value {exc}")

    # events ------------------------------------------------------------------------------------

    def event(self, data: dict[str, Any], where: Location) -> EventRule:
        name = data["name"]
        if len(name) > MAX_NAME:
            self.fail(
                (*where, "name"),
                f"the event name has {len(name)} characters; Braze allows {MAX_NAME}",
            )
        time_spec = data.get("time", DEFAULT_EVENT_TIME)
        time_where = (*where, "time")
        if isinstance(time_spec, dict) and time_spec.get("type", "time") != "time":
            self.fail((*time_where, "type"), "an event's time has type time")
        time = self.field(f"the time of event '{name}'", "time", time_spec, time_where, "time")
        time = replace(time, required=time.fixed is MISSING and time.source is not None)
        properties = tuple(
            self.property(key, spec, (*where, "properties", key), name)
            for key, spec in data.get("properties", {}).items()
        )
        return EventRule(name, time, properties, self.dedupe(data, where))

    def dedupe(self, data: dict[str, Any], where: Location) -> Source | None:
        """Where an event's de-duplication key is: its `dedupe_key`, else the lead id."""
        if "dedupe_key" not in data:
            return self.lead_id
        spec = data["dedupe_key"]
        if isinstance(spec, str) and spec.strip().casefold() == NO_KEY:
            return None
        return self.source(spec, (*where, "dedupe_key"))

    def property(self, key: str, spec: Any, where: Location, event: str) -> FieldRule:
        if key in RESERVED_PROPERTIES:
            self.fail(where, f"'{key}' is reserved by Braze in event properties")
        self.check_name(key, where, "event property")
        return self.field(f"property '{key}' of event '{event}'", key, spec, where)

    # filters -----------------------------------------------------------------------------------

    def filter(self, data: dict[str, Any], where: Location) -> Filter:
        spec, where = data["drop_if"], (*where, "drop_if")
        if isinstance(spec, dict):
            return Filter(data["name"], (self.condition(spec, where),))
        conditions = tuple(self.condition(item, (*where, n)) for n, item in enumerate(spec))
        return Filter(data["name"], conditions)

    def condition(self, data: dict[str, Any], where: Location) -> Condition:
        tests = [test for test in TESTS if test in data]
        if len(tests) != 1:
            self.fail(where, f"give exactly one test, one of: {', '.join(TESTS)}")
        test, operand = tests[0], data[tests[0]]
        source = self.source(data["from"], (*where, "from"))
        if test == "exists":
            return Condition(source, test, exists=bool(operand))
        if test == "matches":
            return Condition(source, test, pattern=self.pattern(operand, (*where, test)))
        operands = operand if isinstance(operand, list) else [operand]
        texts = tuple((text_of(item) or "").strip().casefold() for item in operands)
        return Condition(source, test, texts)

    def pattern(self, text: str, where: Location) -> re.Pattern[str]:
        try:
            return re.compile(text, re.IGNORECASE)
        except re.error as exc:
            self.fail(where, f"not a valid regular expression: {exc}")


def _texts(value: Any) -> list[str]:
    items = value if isinstance(value, list) else [] if value is None else [value]
    return [text_of(item) or "" for item in items]
