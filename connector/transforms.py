"""Turn lead values into what Braze stores: text, numbers, booleans, times and arrays.

Every refusal is a `CoercionError` whose message is a predicate about the value ("is not a
number") and never the value itself, so it can travel to the dead-letter topic without leaking an
e-mail address or a phone number.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

MAX_TEXT = 255
TYPES = ("string", "number", "integer", "boolean", "time", "array")
TEXT_TRANSFORMS = ("trim", "lower", "upper", "sha256")
ARGUMENT_TRANSFORMS = ("prefix", "suffix")

# Epoch values this large are milliseconds: 1e11 seconds is the year 5138, 1e11 ms is 1973.
EPOCH_MS_FROM = 100_000_000_000
MIN_YEAR, MAX_YEAR = 1, 3000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MAX_NUMBER_TEXT = 64

TRUE_WORDS = frozenset({"true", "yes", "y", "1", "on", "checked"})
FALSE_WORDS = frozenset({"false", "no", "n", "0", "off", "unchecked"})

_NUMBER = re.compile(
    r"""
    (?P<sign>[+-]?)\s*
    (?P<currency>[$€£¥₹₩₽₺₪฿₫₴₦]|[A-Z]{3}(?=\s*[+\-\d.]))?\s*
    (?P<inner_sign>[+-]?)
    (?P<whole>[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+|(?=\.[0-9]))
    (?P<fraction>\.[0-9]+)?
    (?P<exponent>[eE][+-]?[0-9]{1,3})?
    \s*(?P<unit>%|[$€£¥₹₩₽₺₪฿₫₴₦]|[^\W\d_]{1,8})?
    """,
    re.VERBOSE,
)
# Nine digits or more: shorter digit strings are more likely dates such as 20240501.
_EPOCH = re.compile(r"[+-]?[0-9]{9,16}(?:\.[0-9]+)?")
# What `_to_time` writes (2025-03-14T09:12:13.589Z) as bytes, each ASCII digit read as 0.
_CANONICAL_SHAPE = b"0000-00-00T00:00:00.000Z"
_DIGITS_AS_ZERO = bytes.maketrans(b"0123456789", b"0" * 10)
_FIRST_YEAR, _YEAR_AFTER = f"{MIN_YEAR:04d}", f"{MAX_YEAR + 1:04d}"
_from_iso = datetime.fromisoformat  # bound once: looked up per lead, it costs a fifth of a check
_JS_DATE = re.compile(r"(\w{3} \w{3} \d{1,2} \d{4} \d\d:\d\d:\d\d) GMT([+-]\d{4})(?: \(.*\))?")


class CoercionError(ValueError):
    """A value cannot become the wanted type; the message says why without quoting it."""


def text_of(value: Any) -> str | None:
    """Return a scalar as text: strings as they are, numbers and booleans written out."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return _int_text(value)
    if isinstance(value, float):
        return _float_text(value)
    return None


def _int_text(value: int) -> str | None:
    try:
        return str(value)
    except ValueError:  # more digits than Python agrees to print
        return None


def _float_text(value: float) -> str | None:
    if not math.isfinite(value):
        return None
    if value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    return repr(value)


def truncate(text: str, limit: int = MAX_TEXT) -> str:
    """Cut text to Braze's limit of 255 characters."""
    return text if len(text) <= limit else text[:limit]


def to_string(value: Any) -> str:
    """Text of at most 255 characters; a list of scalars is joined with commas."""
    if type(value) is str:  # the common case, first
        return value if len(value) <= MAX_TEXT else value[:MAX_TEXT]
    if isinstance(value, list):
        return truncate(", ".join(to_string(item) for item in value if item is not None))
    text = text_of(value)
    if text is None:
        raise CoercionError(_not("text", value))
    return truncate(text)


def to_number(value: Any) -> int | float:
    """A JSON number as it is, or a number read from text like `$1,234.50`, `75%` or `-3e2`."""
    if type(value) is int:  # the common case, first; bools are not of type int
        return value
    if type(value) is str and value.isdigit() and value.isascii() and len(value) <= MAX_NUMBER_TEXT:
        return int(value)  # plain digits, as forms send scores: what the pattern makes of them
    if isinstance(value, bool):
        raise CoercionError("is a boolean, not a number")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise CoercionError("is not a finite number")
        return value
    if isinstance(value, str):
        return _parse_number(value)
    raise CoercionError(_not("a number", value))


def _parse_number(text: str) -> int | float:
    text = text.strip().replace("\u2212", "-")
    if len(text) > MAX_NUMBER_TEXT:
        raise CoercionError("is too long to be a number")
    match = _NUMBER.fullmatch(text)
    if match is None or (match["sign"] and match["inner_sign"]):
        raise CoercionError("is not a number")
    sign = "-" if "-" in (match["sign"], match["inner_sign"]) else ""
    whole = match["whole"].replace(",", "")
    if match["fraction"] is None and match["exponent"] is None:
        return int(sign + whole)
    number = float(sign + (whole or "0") + (match["fraction"] or "") + (match["exponent"] or ""))
    if not math.isfinite(number):
        raise CoercionError("is too large to be a number")
    return number


def to_integer(value: Any) -> int:
    """A whole number; `72.0` and `"1,200"` qualify, `72.5` does not."""
    number = to_number(value)
    if isinstance(number, int):
        return number
    if not number.is_integer():
        raise CoercionError("is not a whole number")
    return int(number)


def to_boolean(value: Any) -> bool:
    """A JSON boolean, 0 or 1, or a word such as yes/no, true/false, on/off."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().casefold()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
    raise CoercionError(_not("a boolean", value))


def to_time(value: Any) -> str:
    """An ISO 8601 UTC time with milliseconds, from ISO text or epoch seconds or milliseconds."""
    if isinstance(value, str) and is_canonical_time(value):
        return value  # already what _to_time writes, as JavaScript's toISOString() does
    return _to_time(value)


def is_canonical_time(text: str) -> bool:
    """Whether text is what `_to_time` writes for it: a real moment in the years Braze accepts,
    written `YYYY-MM-DDTHH:MM:SS.mmmZ`, as most leads carry their times; plans ask it first.
    """
    # The shape compared as bytes, ASCII digits made 0: what a regular expression of the shape
    # tests, at a third of its cost (isascii() keeps encode() from failing). Within the shape,
    # text compares with a year's four digits as its year does.
    if not text.isascii() or text.encode().translate(_DIGITS_AS_ZERO) != _CANONICAL_SHAPE:
        return False
    if not _FIRST_YEAR <= text < _YEAR_AFTER:
        return False
    try:
        _from_iso(text)
    except ValueError:  # no such day or time, e.g. 2026-02-30
        return False
    return True


def _to_time(value: Any) -> str:
    moment = _moment(value)
    try:
        moment = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    except (OverflowError, ValueError):
        raise CoercionError("is outside the years Braze accepts") from None
    if not MIN_YEAR <= moment.year <= MAX_YEAR:
        raise CoercionError("is outside the years Braze accepts")
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _moment(value: Any) -> datetime:
    if isinstance(value, bool):
        raise CoercionError("is a boolean, not a time")
    if isinstance(value, int | float):
        return _from_epoch(value)
    if not isinstance(value, str):
        raise CoercionError(_not("a time", value))
    text = value.strip()
    if _EPOCH.fullmatch(text):
        return _from_epoch(float(text) if "." in text else int(text))
    for reader in (datetime.fromisoformat, _javascript_date, _rfc_2822):
        try:
            return reader(text)
        except (ValueError, TypeError, OverflowError, IndexError):
            continue
    raise CoercionError("is not a time (ISO 8601 or epoch seconds or milliseconds)")


def _from_epoch(number: float) -> datetime:
    # timedelta keeps whole milliseconds exact where a float division would not.
    try:
        if abs(number) >= EPOCH_MS_FROM:
            return EPOCH + timedelta(milliseconds=number)
        return EPOCH + timedelta(seconds=number)
    except (OverflowError, ValueError):
        raise CoercionError("is outside the years Braze accepts") from None


def _rfc_2822(text: str) -> datetime:
    return parsedate_to_datetime(text)


def _javascript_date(text: str) -> datetime:
    """Read what JavaScript's Date.toString() writes, e.g. `Wed May 01 2024 10:20:30 GMT+0000`."""
    match = _JS_DATE.fullmatch(text)
    if match is None:
        raise ValueError("not a JavaScript date")
    return datetime.strptime(f"{match[1]} {match[2]}", "%a %b %d %Y %H:%M:%S %z")


def to_array(value: Any, split: str | None = None) -> list[str]:
    """Unique texts of at most 255 characters each, from a list, a scalar or a split string."""
    items = value if isinstance(value, list) else [value]
    texts: list[str] = []
    for item in items:
        if item is None:
            continue
        if isinstance(item, list | dict):
            raise CoercionError("holds lists or objects; array elements must be text")
        parts = [to_string(item)]
        if split is not None and isinstance(item, str):
            parts = [part.strip() for part in item.split(split)]
        texts.extend(truncate(part) for part in parts if part)
    return list(dict.fromkeys(texts))


Converter = Callable[[Any], Any]
CONVERTERS: dict[str, Converter] = {
    "string": to_string,
    "number": to_number,
    "integer": to_integer,
    "boolean": to_boolean,
    "time": to_time,
}


def coerce(value: Any, kind: str, split: str | None = None) -> Any:
    """Convert a value to one of TYPES, or raise CoercionError."""
    return converter(kind, (), split)(value)


@dataclass(frozen=True)
class Transform:
    """One step applied to text before it is typed: trim, lower, upper, sha256, prefix, suffix."""

    name: str
    argument: str = ""

    def compile(self) -> Callable[[str], str]:
        """The step as a function of text."""
        if self.name in _STR_METHODS:
            return _STR_METHODS[self.name]
        if self.name == "sha256":
            return _sha256
        argument = self.argument
        if self.name == "prefix":
            return lambda text: argument + text
        return lambda text: text + argument


_STR_METHODS: dict[str, Callable[[str], str]] = {
    "trim": str.strip,
    "lower": str.lower,
    "upper": str.upper,
}


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def shaper(transforms: Sequence[Transform]) -> Callable[[str], str]:
    """The transforms, in order, as one function of text."""
    steps = tuple(step.compile() for step in transforms)
    if len(steps) == 1:
        return steps[0]

    def shape(text: str) -> str:
        for step in steps:
            text = step(text)
        return text

    return shape


def text_shaper(transforms: Sequence[Transform]) -> Callable[[Any], Any]:
    """The transforms over a scalar's text; a value that is not a scalar is refused."""
    shape = shaper(transforms)

    def shape_text(value: Any) -> str:
        text = value if type(value) is str else text_of(value)
        if text is None:
            raise CoercionError(_not("text", value))
        return shape(text)

    return shape_text


def transform_text(value: Any, transforms: Sequence[Transform]) -> Any:
    """Run the transforms over a scalar's text; without transforms the value is left alone."""
    return text_shaper(transforms)(value) if transforms else value


def converter(
    kind: str, transforms: Sequence[Transform] = (), split: str | None = None
) -> Callable[[Any], Any]:
    """`coerce(transform_text(value, transforms), kind, split)` as one function."""
    if kind == "array":
        convert: Callable[[Any], Any] = lambda value: to_array(value, split)  # noqa: E731
    else:
        convert = CONVERTERS[kind]
    if not transforms:
        return convert
    shape = text_shaper(transforms)
    return lambda value: convert(shape(value))


def _not(wanted: str, value: Any) -> str:
    """Say what a value is instead of what was wanted, naming only its JSON kind."""
    kinds = {dict: "an object", list: "a list", str: "text", bool: "a boolean", type(None): "null"}
    kind = kinds.get(type(value), "a number" if isinstance(value, int | float) else "unreadable")
    return f"is {kind}, not {wanted}"
