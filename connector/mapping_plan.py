"""A profile's rules compiled once into one generated Python function: how its records are mapped.

`compile_plan()` writes the source of a function from a parsed lead (a dict) to what
`Mapping.apply` returns, and compiles it. The function reads each source at most once per record
into a local variable, follows key paths with plain dict look-ups, types a value once where
several rules type it alike, and builds nothing per record but the results. Where a record
leaves the common way (a node that is not a dict, a selector, a value that cannot be typed, a
required value missing, a first identity candidate that is not usable text) the generated code
calls the path's walker or the rule's own method: the rules stay the reference, so results and
failure reasons are theirs by construction.

Only identifiers made here and Python literals (`repr`) enter the source; whatever the mapping
file says reaches it as a literal or as a constant bound by name, never as code.
"""

from __future__ import annotations

import contextlib
import linecache
from collections import Counter, abc
from collections.abc import Callable, Hashable, Iterator
from functools import partial
from itertools import count
from typing import Any

from connector.mapping_paths import MISSING, Key, Path, Select, Step, matches, walker
from connector.mapping_reads import SOLID, Document, first_by_rule, keyed, typed_key
from connector.mapping_results import BrazeUpdate, Filtered
from connector.mapping_rules import (
    Condition,
    FieldRule,
    IdentityRule,
    Profile,
    Source,
    has_value,
    no_identity,
)
from connector.transforms import (
    CONVERTERS,
    MAX_TEXT,
    CoercionError,
    Transform,
    is_canonical_time,
    to_array,
    transform_text,
)

Plan = Callable[[Document, str, int | None], BrazeUpdate | Filtered]

_UNSET = object()  # a source not read yet in this record
_META = {"source": "source", "received_at": "received_at_ms"}  # facts, as the plan's arguments
_STR_METHODS = {"trim": ".strip()", "lower": ".lower()", "upper": ".upper()"}
_plans = count()


def compile_plan(profile: Profile) -> Plan:
    """Return a function mapping a lead as `profile` says; the same as applying its rules."""
    writer = _Writer(profile)
    source = writer.source()
    filename = f"<mapping plan {next(_plans)}: {profile.name}>"
    # Tracebacks and profilers show the generated lines.
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace = dict(writer.constants)
    exec(compile(source, filename, "exec"), namespace)  # noqa: S102  # our own source, see above
    plan: Plan = namespace["plan"]
    return plan


class _Writer:
    """Writes one profile's plan: lines, the constants they name, the locals they read into."""

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self.lines: list[str] = []
        self.depth = 1
        self.constants: dict[str, Any] = {
            "_MISSING": MISSING,
            "_UNSET": _UNSET,
            "_SOLID": SOLID,
            "_has_value": has_value,
            "_CoercionError": CoercionError,
            "_BrazeUpdate": BrazeUpdate,
            "_Filtered": Filtered,
            "_matches": matches,
            "_Mapping": abc.Mapping,
            "_is_canonical_time": is_canonical_time,
        }
        self._named: dict[int, str] = {}
        self.reads: dict[Source, str] = {}  # source -> local holding what it finds
        self.assigned: set[str] = set()  # locals surely set by now (set at the top level)
        self.guarded: set[str] = set()  # locals that may be read before they are set
        fields = [rule for rule in _field_rules(profile) if rule.source is not None]
        self.typed_uses = Counter(typed_key(rule) for rule in fields)
        self.typed: dict[Hashable, str] = {}  # typed key -> local holding the typed value
        self.locals = count()
        # The record's facts as the rules take them: built only where a rule is asked.
        facts = f"'source': source, 'received_at': received_at_ms, 'profile': {profile.name!r}"
        self.meta = f"{{{facts}}}"

    # -- the function ---------------------------------------------------------------------------

    def source(self) -> str:
        """The whole module source: `def plan(...)` and its body."""
        profile = self.profile
        for rule in profile.filters:
            with contextlib.ExitStack() as stack:
                for condition in rule.conditions:
                    stack.enter_context(self.block(f"if {self.holds(condition)}:"))
                self.line(f"return _Filtered({rule.name!r})")
        self.identity()
        self.values("values", profile.attributes)
        keys = {"user_alias" if rule.kind == "alias" else rule.kind for rule in profile.identity}
        if any(rule.name in keys for rule in profile.attributes):
            # An attribute named like the identity field gives way to it.
            with self.block("for field in identity:"):
                self.line("values.pop(field, None)")
        if "user_alias" in keys:
            # Braze creates an alias-only profile only when told to; events alone never do.
            with self.block("if 'user_alias' in identity:"):
                self.line("values['_update_existing_only'] = False")
        events = []
        for number, event in enumerate(profile.events):
            time = self.value(event.time)
            name = f"event{number}"
            self.line(f"{name} = {{'name': {event.name!r}, 'time': {time}}}")
            if event.properties:
                self.values("properties", event.properties)
                with self.block("if properties:"):
                    self.line(f"{name}['properties'] = properties")
            events.append(name)
        found = "".join(f"{name}, " for name in events)
        self.line(f"return _BrazeUpdate(user_key, identity, values, ({found}))")
        head = ["def plan(document, source, received_at_ms):"]
        head += [f"    {name} = _UNSET" for name in sorted(self.guarded)]
        return "\n".join(head + self.lines) + "\n"

    def line(self, text: str) -> None:
        self.lines.append("    " * self.depth + text)

    @contextlib.contextmanager
    def block(self, header: str) -> Iterator[None]:
        self.line(header)
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1

    def const(self, value: Any) -> str:
        """The name the plan knows `value` by (kept alive here, so ids stay unique)."""
        name = self._named.get(id(value))
        if name is None:
            name = self._named[id(value)] = f"_c{len(self._named)}"
            self.constants[name] = value
        return name

    # -- reading sources --------------------------------------------------------------------------

    def read(self, source: Source) -> str:
        """Make sure the source's local is set here; return its name."""
        local = self.reads.setdefault(source, f"read{len(self.reads)}")
        if local in self.assigned:
            return local
        if local in self.guarded or self.depth > 1:
            self.guarded.add(local)
            with self.block(f"if {local} is _UNSET:"):
                self.read_into(source, local)
        else:
            self.read_into(source, local)
        if self.depth == 1:
            self.assigned.add(local)
        return local

    def read_into(self, source: Source, local: str) -> None:
        """`local = reader(source)(document, meta)`: the first path holding a value, or MISSING."""
        if not all(keyed(path) for path in source.paths):
            # Only paths not written in a mapping file: the source's own way.
            first = self.const(partial(first_by_rule, source))
            self.line(f"{local} = {first}(document, {self.meta})")
            return
        with self.block("while True:"):
            for path in source.paths:
                self.probe(path, local)
            self.line(f"{local} = _MISSING")
            self.line("break")

    def probe(self, path: Path, local: str) -> None:
        """Try one path: on a value, set `local` and leave the read's loop."""
        if path.meta is not None:
            fact = _META.get(path.meta)
            start = fact or repr(self.profile.name)
            rest: tuple[Step, ...] = ()
        else:
            first, rest = path.steps[0], path.steps[1:]
            assert isinstance(first, Key)  # read_into() checked it
            start = f"document.get({first.name!r})"
        with self.block(f"if (v := {start}) is not None:"):
            self.follow(rest, local)

    def follow(self, steps: tuple[Step, ...], local: str) -> None:
        """From the node in `v` (neither None nor MISSING), take the steps, then `found()`.

        Keys and selectors of dicts are written out; anything else (a node that is not a dict
        or list, a list position, `[*]`) goes to the walker of the steps left, as `walk` would.
        """
        if not steps:
            self.found(local)
            return
        step, rest = steps[0], steps[1:]
        if isinstance(step, Key):
            with self.block("if type(v) is dict:"):
                self.line(f"v = v.get({step.name!r})")
                with self.block("if v is not None:"):
                    self.follow(rest, local)
            with self.block("else:"):
                self.walk(steps, local)
        elif isinstance(step, Select):
            field, wanted = repr(step.field), repr(step.value)
            with self.block("if isinstance(v, list):"):
                self.line("hit = _MISSING")
                with self.block("for item in v:"):
                    with self.block("if type(item) is dict:"):
                        self.line(f"text = item.get({field})")
                        same = f"text.strip().casefold() == {wanted}"
                        test = f"{same} if type(text) is str else _matches(text, {wanted})"
                        with self.block(f"if {test}:"):
                            self.line("hit = item")
                            self.line("break")
                    other = f"_matches(item.get({field}), {wanted})"
                    with self.block(f"elif isinstance(item, _Mapping) and {other}:"):
                        self.line("hit = item")
                        self.line("break")
                with self.block("if hit is not _MISSING:"):
                    self.line("v = hit")
                    self.follow(rest, local)
        else:
            self.walk(steps, local)

    def walk(self, steps: tuple[Step, ...], local: str) -> None:
        self.line(f"v = {self.const(walker(steps))}(v)")
        with self.block("if v is not _MISSING:"):  # walkers give MISSING, never None
            self.found(local)

    def found(self, local: str) -> None:
        """`v` holds a value unless it is blank text or an empty list."""
        holds = "v.strip() if type(v) is str else type(v) in _SOLID or _has_value(v)"
        with self.block(f"if {holds}:"):
            self.line(f"{local} = v")
            self.line("break")

    # -- filters ----------------------------------------------------------------------------------

    def holds(self, condition: Condition) -> str:
        """An expression saying whether `condition.holds()`."""
        local = self.read(condition.source)
        if condition.test == "exists":
            return f"({local} is not _MISSING) is {condition.exists!r}"
        holds = f"{local} is not _MISSING and {self.const(condition)}.holds_for({local})"
        text = f"{local}.strip()"
        if condition.pattern is not None:
            test = f"{self.const(condition.pattern)}.search({text}) is not None"
        elif condition.test == "equals":
            test = f"{text}.casefold() in {self.const(condition.operands)}"
        elif condition.test in ("starts_with", "ends_with"):
            method = "startswith" if condition.test == "starts_with" else "endswith"
            test = f"{text}.casefold().{method}({self.const(condition.operands)})"
        else:
            return holds
        # Text, the common case, tested inline; anything else the condition's own way.
        return f"({test} if type({local}) is str else {holds})"

    # -- identity ---------------------------------------------------------------------------------

    def identity(self) -> None:
        """Set `user_key` and `identity` from the first identity rule that matches, or raise."""
        rules = self.profile.identity
        self.line("user_key = None")
        with contextlib.ExitStack() as stack:
            for number, rule in enumerate(rules):
                if number:
                    stack.enter_context(self.block("if user_key is None:"))
                self.match(rule)
        with self.block("if user_key is None:"):
            self.line(f"raise {self.const(no_identity)}({self.const(rules)})")

    def match(self, rule: IdentityRule) -> None:
        """`rule.match()`: the first candidate decides unless it is not usable text."""
        local = self.read(rule.source)
        with self.block(f"if {local} is not _MISSING:"):
            with self.block(f"if type({local}) is str:"):
                self.line(f"text = {self.shaped(local + '.strip()', rule.transforms)}")
                with self.block("if text:"):
                    self.identify(rule)
            with self.block("if user_key is None:"):
                # Numbers, or a later candidate: the rule's own way.
                self.line(f"match = {self.const(rule)}.match(document, {self.meta})")
                with self.block("if match is not None:"):
                    self.line("user_key, identity = match.user_key, match.fields")

    def shaped(self, text: str, transforms: tuple[Transform, ...]) -> str:
        """An expression doing the transforms in order over the text expression."""
        for step in transforms:
            method = _STR_METHODS.get(step.name)
            if method == ".strip()" and text.endswith(method):
                continue  # stripped already: stripping again changes nothing
            text = text + method if method else f"{self.const(step)}({text})"
        return text

    def identify(self, rule: IdentityRule) -> None:
        """What `IdentityRule._identity` gives for `text`, as a user key and fields."""
        if rule.kind == "alias":
            alias = f"'alias_name': text, 'alias_label': {rule.label!r}"
            self.line(f"user_key = {'alias:' + rule.label + ':'!r} + text")
            self.line(f"identity = {{'user_alias': {{{alias}}}}}")
        else:
            self.line(f"user_key = {rule.kind + ':'!r} + text")
            self.line(f"identity = {{{rule.kind!r}: text}}")

    # -- attributes, event properties, event times ----------------------------------------------

    def values(self, name: str, rules: tuple[FieldRule, ...]) -> None:
        """`name = {rule.name: value}` for the rules that find a value, in the rules' order."""
        self.line(f"{name} = {{}}")
        for rule in rules:
            if rule.source is None and rule.fixed is MISSING:
                continue
            value = self.value(rule)
            store = f"{name}[{rule.name!r}] = {value}"
            if rule.source is None or rule.required or rule.fixed is not MISSING:
                self.line(store)  # never MISSING
            else:
                with self.block(f"if {value} is not _MISSING:"):
                    self.line(store)

    def value(self, rule: FieldRule) -> str:
        """An expression for `rule.value()` (a constant or a local, set here as needed); the
        rule itself says why when a value is missing or wrong."""
        if rule.source is None:
            return self.const(rule.fixed)
        key = typed_key(rule)
        typed = self.typed.get(key)
        if typed is None:
            # Typed once; where typing fails the first rule asking raises, so no rule after it
            # ever sees that value.
            typed = f"typed{next(self.locals)}"
            if self.typed_uses[key] > 1:
                self.typed[key] = typed
            self.typing(rule, self.read(rule.source), typed)
        if not rule.required and rule.fixed is MISSING:
            return typed
        # A local of its own: `typed` may be shared with rules that treat a miss otherwise.
        missing = self.fallback(rule) if rule.required else self.const(rule.fixed)
        self.line(f"x = {missing} if {typed} is _MISSING else {typed}")
        return "x"

    def fallback(self, rule: FieldRule) -> str:
        """The rule's own way to its value: it raises, naming the rule and the path."""
        return f"{self.const(rule)}.value(document, {self.meta})"

    def typing(self, rule: FieldRule, local: str, typed: str) -> None:
        """`typed` = the source's value typed as the rule says, or MISSING."""
        convert = self.const(_converter(rule.kind, rule.transforms, rule.split))
        self.line(f"{typed} = {local}")
        if not rule.transforms and rule.kind == "string":
            # Text as it is, cut to Braze's length.
            text, long = f"if type({typed}) is str:", f"if len({typed}) > {MAX_TEXT}:"
            with self.block(text), self.block(long):
                self.line(f"{typed} = {typed}[:{MAX_TEXT}]")
            otherwise = f"elif {typed} is not _MISSING:"
        elif not rule.transforms and rule.kind in ("number", "integer"):
            otherwise = f"if type({typed}) is not int and {typed} is not _MISSING:"
        elif not rule.transforms and rule.kind == "time":
            # A time already as Braze wants it, the common case, stays as it is.
            canonical = f"type({typed}) is str and _is_canonical_time({typed})"
            otherwise = f"if {typed} is not _MISSING and not ({canonical}):"
        else:
            otherwise = f"if {typed} is not _MISSING:"
        with self.block(otherwise):
            with self.block("try:"):
                self.line(f"{typed} = {convert}({typed})")
            with self.block("except _CoercionError:"):
                self.line(f"{typed} = {self.fallback(rule)}")


def _field_rules(profile: Profile) -> Iterator[FieldRule]:
    yield from profile.attributes
    for event in profile.events:
        yield event.time
        yield from event.properties


def _converter(
    kind: str, transforms: tuple[Transform, ...], split: str | None
) -> Callable[[Any], Any]:
    """`coerce(transform_text(raw, transforms), kind, split)` as one function."""
    convert = partial(to_array, split=split) if kind == "array" else CONVERTERS[kind]
    if not transforms:
        return convert
    return lambda raw: convert(transform_text(raw, transforms))
