"""The path language of mapping files: where in a lead a value is found.

calc_name                         a key
user_info.email                   nested keys
questions.0.answer, results[-1]   list positions (from the end when negative)
results[title=Score].value        the first element whose `title` is `Score` (case and
                                  surrounding spaces ignored)
questions[*].answer               every element's answer, as a list
"Which plan?".value               a quoted key, for keys holding `.`, `[` or `"`
$source, $received_at, $profile   facts about the record rather than the lead
"""

from __future__ import annotations

import enum
from collections import abc
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn

from connector.transforms import text_of

META_FIELDS = ("source", "received_at", "profile")
MAX_INDEX_DIGITS = 9


class Missing(enum.Enum):
    """Marks a path that leads nowhere (or to null), as distinct from any JSON value."""

    MISSING = "missing"


MISSING = Missing.MISSING


class PathSyntaxError(ValueError):
    """A path is not written in the path language; the message says where and why."""


@dataclass(frozen=True)
class Key:
    name: str


@dataclass(frozen=True)
class Index:
    position: int


@dataclass(frozen=True)
class Select:
    field: str
    value: str  # casefolded, trimmed


@dataclass(frozen=True)
class Each:
    pass


Step = Key | Index | Select | Each


@dataclass(frozen=True)
class Path:
    """A parsed path; `text` is what the mapping file says, for messages."""

    text: str
    steps: tuple[Step, ...]
    meta: str | None = None
    # `walk(node, steps)` made once into a function of the node; see `walker`.
    walker: Callable[[Any], Any] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "walker", walker(self.steps))

    def resolve(self, document: Any, meta: abc.Mapping[str, Any]) -> Any:
        """Return the value the path leads to, or MISSING."""
        if self.meta is None:
            return self.walker(document)
        value = meta.get(self.meta)
        return MISSING if value is None else value

    def __str__(self) -> str:
        return self.text


def parse_path(text: str) -> Path:
    """Parse a path, or raise PathSyntaxError."""
    if text.startswith("$"):
        if text[1:] not in META_FIELDS:
            known = ", ".join("$" + name for name in META_FIELDS)
            raise PathSyntaxError(f"unknown record field '{text}'; known: {known}")
        return Path(text, (), text[1:])
    return Path(text, _Parser(text).steps())


def matches(value: Any, wanted: str) -> bool:
    """Compare a scalar with a selector value, ignoring case and surrounding spaces."""
    text = text_of(value)
    return text is not None and text.strip().casefold() == wanted


def walk(node: Any, steps: tuple[Step, ...]) -> Any:
    """Follow `steps` from `node` one at a time; return the value, or MISSING."""
    for position, step in enumerate(steps):
        if type(step) is Key and type(node) is dict:  # the common case, without _step's checks
            node = node.get(step.name)
            if node is None:
                return MISSING
            continue
        if isinstance(step, Each):
            return _each(node, steps[position + 1 :])
        node = _step(node, step)
        if node is MISSING or node is None:
            return MISSING
    return node


def _each(node: Any, rest: tuple[Step, ...]) -> Any:
    if not isinstance(node, list):
        return MISSING
    found = (walk(item, rest) for item in node)
    return [value for value in found if value is not MISSING]


def _step(node: Any, step: Step) -> Any:
    if isinstance(step, Key):
        if isinstance(node, abc.Mapping):
            return node.get(step.name, MISSING)
        if _is_index(step.name):
            return _at(node, int(step.name))
        return MISSING
    if isinstance(step, Index):
        return _at(node, step.position)
    if isinstance(step, Select) and isinstance(node, list):
        for item in node:
            # `type(item) is dict` first: the common case, without the slower ABC check.
            is_mapping = type(item) is dict or isinstance(item, abc.Mapping)
            if is_mapping and matches(item.get(step.field), step.value):
                return item
    return MISSING


def _is_index(name: str) -> bool:
    return name.isascii() and name.isdigit() and len(name) <= MAX_INDEX_DIGITS


def _at(node: Any, position: int) -> Any:
    if isinstance(node, list) and -len(node) <= position < len(node):
        return node[position]
    return MISSING


# --- walkers: `walk` made once per path into a function of the node ---------------------------

Move = Callable[[Any], Any]


def walker(steps: tuple[Step, ...]) -> Move:
    """Return a function doing what `walk(node, steps)` does, with each step prepared once.

    Each step becomes a function that finds the next node and hands it to the function of the
    steps after it; a run of keys at the end is one function.
    """
    if all(type(step) is Key for step in steps):
        return _keys(steps) if steps else _itself
    step, then = steps[0], walker(steps[1:]) if len(steps) > 1 else None
    if type(step) is Each:
        return _each_then(then)
    if type(step) is Select:
        return _select_then(step.field, step.value, then)
    return _step_then(step, then)


def _itself(node: Any) -> Any:
    return node


def _keys(steps: tuple[Step, ...]) -> Move:
    """Keys only, the most common: plain dict look-ups while the nodes are dicts."""
    names = tuple(step.name for step in steps if isinstance(step, Key))
    if len(names) == 1:
        return _key(names[0], steps)

    def keys(node: Any) -> Any:
        for position, name in enumerate(names):
            if type(node) is not dict:
                return walk(node, steps[position:])
            node = node.get(name)
            if node is None:  # absent or null, as _step and walk see it
                return MISSING
        return node

    return keys


def _key(name: str, steps: tuple[Step, ...]) -> Move:
    def key(node: Any) -> Any:
        if type(node) is not dict:
            return walk(node, steps)
        node = node.get(name)
        return MISSING if node is None else node

    return key


def _each_then(then: Move | None) -> Move:
    """`[*]`: the rest of the way from each element of a list, keeping what leads somewhere."""

    def each(node: Any) -> Any:
        if not isinstance(node, list):
            return MISSING
        if then is None:
            return list(node)
        return [value for value in map(then, node) if value is not MISSING]

    return each


def _select_then(field: str, wanted: str, then: Move | None) -> Move:
    """`[field=value]`: the first element whose field's text matches, text compared straight."""

    def select(node: Any) -> Any:
        if not isinstance(node, list):
            return MISSING
        for item in node:
            if type(item) is dict:
                found = item.get(field)
                hit = (
                    found.strip().casefold() == wanted
                    if type(found) is str
                    else matches(found, wanted)
                )
            elif isinstance(item, abc.Mapping):
                hit = matches(item.get(field), wanted)
            else:
                continue
            if hit:
                return item if then is None else then(item)
        return MISSING

    return select


def _step_then(step: Step, then: Move | None) -> Move:
    """A key (before other steps) or a list position."""
    name = step.name if isinstance(step, Key) else None

    def move(node: Any) -> Any:
        node = node.get(name) if name is not None and type(node) is dict else _step(node, step)
        if node is None or node is MISSING:
            return MISSING
        return node if then is None else then(node)

    return move


class _Parser:
    """A small scanner over one path's text."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.at = 0

    def steps(self) -> tuple[Step, ...]:
        if not self.text:
            raise PathSyntaxError("the path is empty")
        steps: list[Step] = [Key(self._name(".["))]
        while self.at < len(self.text):
            char = self._take()
            if char == ".":
                steps.append(Key(self._name(".[")))
            elif char == "[":
                steps.append(self._selector())
            else:
                self._fail(f"'{char}' cannot follow a key; use '.' or '['", back=1)
        return tuple(steps)

    def _selector(self) -> Step:
        if not self._peek():
            self._fail("a selector must end with ']'")
        if self._peek() == "*":
            self.at += 1
            step: Step = Each()
        elif self._peek() in ("-", *"0123456789"):
            step = Index(self._index())
        else:
            field = self._field()
            self._expect("=", "a selector is [N], [*] or [field=value]")
            step = Select(field, self._value().strip().casefold())
        self._expect("]", "a selector must end with ']'")
        return step

    def _field(self) -> str:
        quoted = self._peek() == '"'
        field = self._name("=].[")
        if not quoted and not field.strip():
            self._fail("a selector needs a field before '='")
        return field if quoted else field.strip()

    def _index(self) -> int:
        start = self.at
        if self._peek() == "-":
            self.at += 1
        while self._peek().isascii() and self._peek().isdigit():
            self.at += 1
        digits = self.text[start : self.at]
        if digits in ("", "-") or len(digits) > MAX_INDEX_DIGITS:
            self._fail("a list position must be a whole number")
        return int(digits)

    def _value(self) -> str:
        if self._peek() == '"':
            return self._quoted()
        end = self.text.find("]", self.at)
        if end < 0:
            self._fail("a selector must end with ']'")
        value = self.text[self.at : end]
        if not value.strip():
            self._fail("a selector needs a value after '='")
        if '"' in value or "[" in value:
            self._fail("quote a selector value holding '\"' or '['")
        self.at = end
        return value

    def _name(self, stops: str) -> str:
        if self._peek() == '"':
            return self._quoted()
        start = self.at
        while self.at < len(self.text) and self.text[self.at] not in stops:
            if self.text[self.at] in '"]':
                self._fail(f"quote a key holding '{self.text[self.at]}'")
            self.at += 1
        if self.at == start:
            self._fail("a key is missing")
        return self.text[start : self.at]

    def _quoted(self) -> str:
        self.at += 1
        chars: list[str] = []
        while self.at < len(self.text):
            char = self._take()
            if char == '"':
                return "".join(chars)
            if char == "\\" and self.at < len(self.text):
                char = self._take()
            chars.append(char)
        self._fail("a quoted key or value is not closed")

    def _expect(self, char: str, problem: str) -> None:
        if self._peek() != char:
            self._fail(problem)
        self.at += 1

    def _peek(self) -> str:
        return self.text[self.at] if self.at < len(self.text) else ""

    def _take(self) -> str:
        self.at += 1
        return self.text[self.at - 1]

    def _fail(self, problem: str, back: int = 0) -> NoReturn:
        raise PathSyntaxError(f"{problem} (at character {self.at - back + 1})")
