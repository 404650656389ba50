"""The path language of mapping files: where in a lead a value is found.

calc_name                         a key
user_info.email                   nested keys
questions.0.answer, results[-1]   list positions (from the end when negative)
results[title=Score].value        the first element whose `title` is `Score` (case and
                                  surrounding spaces ignored)
questions[*].answer               every element's answer, as a list
"Which plan?".value               a quoted key, for keys holding `.`, `[` or `"`
$source, $received_at, $profile   facts about the record rather than the lead

Each step compiles itself once into a function of the node, handing what it finds to the next
step's; a path is that chain. The mapping's rules and the receiver's record key both read leads
through it.
"""

from __future__ import annotations

import enum
from collections import abc
from collections.abc import Callable
from dataclasses import dataclass
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


Move = Callable[[Any], Any]  # from a node to the value a path's steps lead to, or MISSING
Probe = tuple[str, bool, Move | None]  # see Path.probe


@dataclass(frozen=True)
class Key:
    name: str

    def compile(self, then: Move | None) -> Move:
        """An object's member; of a list, the element at a position written as a key (`a.0`)."""
        name = self.name
        position = int(name) if _is_index(name) else None

        def key(node: Any) -> Any:
            if type(node) is dict or isinstance(node, abc.Mapping):  # dicts without the ABC check
                node = node.get(name)
            elif position is not None:
                node = _at(node, position)
            else:
                return MISSING
            if node is None or node is MISSING:
                return MISSING
            return node if then is None else then(node)

        return key


@dataclass(frozen=True)
class Index:
    position: int

    def compile(self, then: Move | None) -> Move:
        """A list's element at a position, from the end when negative."""
        position = self.position

        def index(node: Any) -> Any:
            node = _at(node, position)
            if node is None or node is MISSING:
                return MISSING
            return node if then is None else then(node)

        return index


@dataclass(frozen=True)
class Select:
    field: str
    value: str  # casefolded, trimmed

    def compile(self, then: Move | None) -> Move:
        """The first element of a list whose field's text matches, case and spaces ignored."""
        field, wanted = self.field, self.value

        def select(node: Any) -> Any:
            if not isinstance(node, list):
                return MISSING
            for item in node:
                if type(item) is dict or isinstance(item, abc.Mapping):
                    found = item.get(field)
                    # Text, the common case, compared without text_of's checks.
                    if type(found) is str:
                        hit = found.strip().casefold() == wanted
                    else:
                        hit = matches(found, wanted)
                    if hit:
                        return item if then is None else then(item)
            return MISSING

        return select


@dataclass(frozen=True)
class Each:
    def compile(self, then: Move | None) -> Move:
        """`[*]`: the rest of the way from each element of a list, keeping what leads somewhere."""

        def each(node: Any) -> Any:
            if not isinstance(node, list):
                return MISSING
            if then is None:
                return list(node)  # nulls too: a list as it is
            return [value for value in map(then, node) if value is not MISSING]

        return each


Step = Key | Index | Select | Each


@dataclass(frozen=True)
class Path:
    """A parsed path; `text` is what the mapping file says, for messages."""

    text: str
    steps: tuple[Step, ...]
    meta: str | None = None

    def walker(self) -> Move:
        """The steps as one function of the node, each step prepared once (no record field)."""
        then: Move | None = None
        for step in reversed(self.steps):
            then = step.compile(then)
        return _itself if then is None else then

    def probe(self) -> Probe:
        """Where to start and the way on: `(name, is_fact, then)`. The value is the record's
        fact `name`, or the lead's member `name` (every path but a fact starts with a key)
        followed by `then` unless None; null, or MISSING from `then`, lead nowhere."""
        if self.meta is not None:
            return self.meta, True, None
        first, rest = self.steps[0], Path(self.text, self.steps[1:])
        if not isinstance(first, Key):
            raise PathSyntaxError(f"{self.text}: a path starts with a key")
        return first.name, False, rest.walker() if rest.steps else None

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


def _is_index(name: str) -> bool:
    return name.isascii() and name.isdigit() and len(name) <= MAX_INDEX_DIGITS


def _at(node: Any, position: int) -> Any:
    if isinstance(node, list) and -len(node) <= position < len(node):
        return node[position]
    return MISSING


def _itself(node: Any) -> Any:
    return node


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
