"""Value coercion: what each Braze type accepts, what it sends, and how it refuses."""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector.transforms import (
    MAX_TEXT,
    CoercionError,
    Transform,
    _parse_number,
    _to_time,
    coerce,
    is_canonical_time,
    text_of,
    to_array,
    to_boolean,
    to_integer,
    to_number,
    to_string,
    to_time,
    transform_text,
    truncate,
)

# --- text --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [("a b", "a b"), (72, "72"), (72.0, "72"), (-0.5, "-0.5"), (True, "true"), (False, "false")],
)
def test_text_of_scalars(value: Any, text: str) -> None:
    assert text_of(value) == text


@pytest.mark.parametrize("value", [None, [1], {"a": 1}, math.nan, math.inf])
def test_text_of_refuses_non_scalars(value: Any) -> None:
    assert text_of(value) is None


def test_text_of_refuses_an_integer_too_long_to_print() -> None:
    assert text_of(10**5000) is None


def test_string_joins_lists_and_cuts_at_255() -> None:
    assert to_string(["a", 2, None, True]) == "a, 2, true"
    assert to_string("x" * 300) == "x" * MAX_TEXT
    assert to_string([]) == ""


@pytest.mark.parametrize(
    ("value", "message"),
    [({"a": 1}, "is an object, not text"), ([{"a": 1}], "is an object, not text")],
)
def test_string_refuses_objects(value: Any, message: str) -> None:
    with pytest.raises(CoercionError, match=message):
        to_string(value)


@given(st.text(max_size=1000), st.integers(min_value=1, max_value=600))
def test_truncation_never_exceeds_the_limit_and_keeps_a_prefix(text: str, limit: int) -> None:
    cut = truncate(text, limit)
    assert len(cut) <= limit
    assert text.startswith(cut)
    assert cut == text or len(cut) == limit


@given(st.text(max_size=1000))
def test_string_values_never_exceed_255(text: str) -> None:
    assert len(to_string(text)) <= MAX_TEXT
    assert all(len(item) <= MAX_TEXT for item in to_array([text, text + "x"]))


# --- numbers -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("72", 72),
        (" 72 ", 72),
        ("-3.5", -3.5),
        ("+4", 4),
        (".5", 0.5),
        ("1e3", 1000.0),
        ("1,234", 1234),
        ("$1,234.50", 1234.5),
        ("-$1,234.50", -1234.5),
        ("$-3", -3),
        ("\u22123", -3),
        ("75%", 75),
        ("0.5 %", 0.5),
        ("72 kg", 72),
        ("1,234.50 USD", 1234.5),
        ("USD 12", 12),
        ("€12.30", 12.3),
        ("12 €", 12),
    ],
)
def test_numbers_from_text(text: str, number: float) -> None:
    result = to_number(text)
    assert result == number
    assert type(result) is type(number)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("N/A", "is not a number"),
        ("12,50", "is not a number"),
        ("1.2.3", "is not a number"),
        ("--3", "is not a number"),
        ("-$-3", "is not a number"),
        ("$95 to $105", "is not a number"),
        ("Q3", "is not a number"),
        ("", "is not a number"),
        ("1e999", "is too large to be a number"),
        ("1" * 65, "is too long to be a number"),
        (True, "is a boolean, not a number"),
        (math.inf, "is not a finite number"),
        ([1], "is a list, not a number"),
        (None, "is null, not a number"),
    ],
)
def test_numbers_refused(value: Any, message: str) -> None:
    with pytest.raises(CoercionError, match=message):
        to_number(value)


@given(st.integers(min_value=-(10**15), max_value=10**15))
def test_integers_round_trip_through_text(number: int) -> None:
    assert to_number(str(number)) == number
    assert to_number(f"{number:,}") == number
    assert to_integer(f"{number:,}") == number
    assert to_number(f"{number}%") == number


@given(
    st.text(alphabet="0123456789", min_size=1, max_size=70)
    | st.text(alphabet=st.characters(categories=["Nd", "No"]), min_size=1, max_size=4)
    | st.text(alphabet="0123456789 ٣²-+.,", min_size=1, max_size=6)
)
def test_digit_text_reads_as_the_pattern_reads_it(text: str) -> None:
    """Plain digits skip the number pattern; what they give must be what it gives, and other
    digits (Arabic-Indic, superscript), too many digits and anything else still go through it."""
    try:
        expected: int | float | str = _parse_number(text)
    except CoercionError as exc:
        expected = f"refused: {exc}"
    try:
        got: int | float | str = to_number(text)
    except CoercionError as exc:
        got = f"refused: {exc}"
    assert got == expected and type(got) is type(expected)


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_floats_round_trip_through_repr(number: float) -> None:
    assert to_number(repr(number)) == number
    assert to_number(number) == number


@given(st.decimals(min_value=0, max_value=10**12, places=2, allow_nan=False))
def test_money_round_trips(amount: Any) -> None:
    assert to_number(f"${amount:,.2f}") == pytest.approx(float(amount))
    assert to_number(f"-${amount:,.2f}") == pytest.approx(-float(amount))


def test_integers_must_be_whole() -> None:
    assert to_integer(72.0) == 72
    assert to_integer("1,200") == 1200
    with pytest.raises(CoercionError, match="is not a whole number"):
        to_integer("72.5")


# --- booleans ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "result"),
    [
        (True, True),
        (False, False),
        (1, True),
        (0.0, False),
        (" Yes ", True),
        ("n", False),
        ("ON", True),
        ("unchecked", False),
        ("1", True),
    ],
)
def test_booleans(value: Any, result: bool) -> None:
    assert to_boolean(value) is result


@pytest.mark.parametrize(
    ("value", "message"), [("maybe", "is text, not a boolean"), (2, "is a number, not a boolean")]
)
def test_booleans_refused(value: Any, message: str) -> None:
    with pytest.raises(CoercionError, match=message):
        to_boolean(value)


# --- times -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "iso"),
    [
        ("2024-05-01T10:20:30.000Z", "2024-05-01T10:20:30.000Z"),
        ("2024-05-01T10:20:30Z", "2024-05-01T10:20:30.000Z"),
        ("2024-05-01T12:20:30+02:00", "2024-05-01T10:20:30.000Z"),
        ("2024-05-01 10:20:30", "2024-05-01T10:20:30.000Z"),
        ("2024-05-01", "2024-05-01T00:00:00.000Z"),
        ("20240501", "2024-05-01T00:00:00.000Z"),
        (1714558830, "2024-05-01T10:20:30.000Z"),
        (1714558830.5, "2024-05-01T10:20:30.500Z"),
        (1714558830123, "2024-05-01T10:20:30.123Z"),
        ("1714558830", "2024-05-01T10:20:30.000Z"),
        ("1714558830123", "2024-05-01T10:20:30.123Z"),
        ("Wed, 01 May 2024 10:20:30 GMT", "2024-05-01T10:20:30.000Z"),
        (
            "Wed May 01 2024 12:20:30 GMT+0200 (Central European Summer Time)",
            "2024-05-01T10:20:30.000Z",
        ),
        ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00.000Z"),
    ],
)
def test_times_become_iso_8601_utc(value: Any, iso: str) -> None:
    assert to_time(value) == iso


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("yesterday", "is not a time"),
        ("05/01/2024", "is not a time"),
        (True, "is a boolean, not a time"),
        ({"t": 1}, "is an object, not a time"),
        ("3001-01-01", "is outside the years Braze accepts"),
        (10**20, "is outside the years Braze accepts"),
        (1e300, "is outside the years Braze accepts"),
        ("0001-01-01T00:00:00+01:00", "is outside the years Braze accepts"),
    ],
)
def test_times_refused(value: Any, message: str) -> None:
    with pytest.raises(CoercionError, match=message):
        to_time(value)


moments = st.datetimes(
    min_value=datetime(1974, 1, 1), max_value=datetime(2999, 12, 31), timezones=st.just(UTC)
).map(lambda moment: moment.replace(microsecond=moment.microsecond // 1000 * 1000))


@given(moments)
def test_times_round_trip_from_iso_and_epoch(moment: datetime) -> None:
    iso = to_time(moment.isoformat())
    assert datetime.fromisoformat(iso) == moment
    assert to_time(iso) == iso
    milliseconds = round(moment.timestamp() * 1000)
    assert to_time(milliseconds) == iso
    if moment.microsecond == 0:
        assert to_time(int(moment.timestamp())) == iso


@given(moments, st.integers(min_value=-14 * 60, max_value=14 * 60))
def test_times_with_offsets_are_the_same_instant(moment: datetime, minutes: int) -> None:
    shifted = moment.astimezone(timezone(timedelta(minutes=minutes)))
    assert to_time(shifted.isoformat()) == to_time(moment.isoformat())


# --- arrays ------------------------------------------------------------------------------------


def test_arrays_keep_unique_texts_in_order() -> None:
    assert to_array(["b", "a", "b", 3, None, True]) == ["b", "a", "3", "true"]
    assert to_array("one") == ["one"]
    assert to_array("a, b,,c ,a", split=",") == ["a", "b", "c"]
    assert to_array(["x" * 300]) == ["x" * MAX_TEXT]


def test_arrays_refuse_nested_values() -> None:
    with pytest.raises(CoercionError, match="array elements must be text"):
        to_array([["a"]])


def test_coerce_dispatches_by_type() -> None:
    assert coerce("75%", "number") == 75
    assert coerce("a;b", "array", ";") == ["a", "b"]
    assert coerce(1, "boolean") is True
    assert coerce(3, "string") == "3"


# --- text transforms ---------------------------------------------------------------------------


def test_transforms_run_in_order() -> None:
    steps = (Transform("trim"), Transform("lower"), Transform("prefix", "og-"))
    assert transform_text("  AbC ", steps) == "og-abc"
    assert transform_text("abc", (Transform("upper"), Transform("suffix", "!"))) == "ABC!"
    assert transform_text(42, (Transform("prefix", "#"),)) == "#42"


def test_sha256_is_the_hex_digest_of_utf8() -> None:
    digest = transform_text("zoë@b.co", (Transform("sha256"),))
    assert digest == hashlib.sha256("zoë@b.co".encode()).hexdigest()


def test_no_transforms_leave_values_alone() -> None:
    value = {"a": [1]}
    assert transform_text(value, ()) is value


def test_transforms_refuse_non_scalars() -> None:
    with pytest.raises(CoercionError, match="is a list, not text"):
        transform_text([1], (Transform("trim"),))


canonical_times = st.from_regex(
    r"[0-9]{4}-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-6][0-9]:[0-6][0-9]\.[0-9]{3}Z", fullmatch=True
)


@given(canonical_times | st.datetimes().map(lambda moment: moment.isoformat()[:23] + "Z"))
def test_times_already_written_as_braze_wants_read_as_any_other(text: str) -> None:
    try:
        expected = _to_time(text)
    except CoercionError as exc:
        with pytest.raises(CoercionError, match=re.escape(str(exc))):
            to_time(text)
    else:
        assert to_time(text) == expected


def given_back(text: str) -> bool:
    """Whether the general way, `_to_time`, gives `text` back as it is."""
    try:
        return _to_time(text) == text
    except CoercionError:
        return False


# Characters a near-canonical time may have instead of its own: other digits (Arabic-Indic,
# superscript, full-width), separators of other ISO forms, case, space, a lone surrogate.
STAND_INS_LISTED = [*"0123456789\u0663\u00b2\uff10-:.,TtZz +/\x00\u00e9", "", "00", "\udc80"]
STAND_INS = st.sampled_from(STAND_INS_LISTED)
written = st.datetimes(min_value=datetime(1, 1, 1)).map(
    lambda moment: moment.isoformat(timespec="milliseconds") + "Z"
)


@st.composite
def near_canonical_times(draw: st.DrawFn) -> str:
    """Text shaped as `_to_time` writes times (of any year, or of no real day), up to two
    characters changed."""
    text = draw(written | canonical_times | st.sampled_from(["0000-01-01T00:00:00.000Z"]))
    for _ in range(draw(st.integers(0, 2))):
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(STAND_INS) + text[at + draw(st.integers(0, 1)) :]
    return text


@given(st.text() | near_canonical_times())
def test_canonical_times_are_the_texts_the_general_way_gives_back(text: str) -> None:
    assert is_canonical_time(text) is given_back(text)


def one_change_away(text: str) -> Iterator[str]:
    """Every text that one stand-in makes of `text`, in place of a character or beside it."""
    for at in range(len(text) + 1):
        for stand_in in STAND_INS_LISTED:
            yield text[:at] + stand_in + text[at + 1 :]
            yield text[:at] + stand_in + text[at:]


@pytest.mark.parametrize(
    "text",
    [
        "2025-03-14T09:12:13.589Z",
        "2024-02-29T23:59:59.999Z",
        "0001-01-01T00:00:00.000Z",
        "3000-12-31T23:59:59.999Z",
    ],
)
def test_canonical_times_one_change_away_are_the_texts_given_back(text: str) -> None:
    for changed in one_change_away(text):
        assert is_canonical_time(changed) is given_back(changed), changed


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("2024-02-29T23:59:59.999Z", True),
        ("0001-01-01T00:00:00.000Z", True),
        ("3000-12-31T23:59:59.999Z", True),
        ("3001-01-01T00:00:00.000Z", False),
        ("0000-01-01T00:00:00.000Z", False),
        ("2026-02-30T10:20:30.000Z", False),
        ("2024-05-01T24:00:00.000Z", False),
        ("2024-05-01T10:20:60.000Z", False),
        ("2024-05-01t10:20:30.000Z", False),
        ("2024-05-01 10:20:30.000Z", False),
        ("2024-05-01T10:20:30,000Z", False),
        ("2024-05-01T10:20:30.000z", False),
        ("2024-05-01T10:20:30.000+00:00", False),
        ("2024-05-0\u0661T10:20:30.000Z", False),
        (" 2024-05-01T10:20:30.000Z", False),
        ("2000-02-29T00:00:00.000Z", True),
        ("1900-02-29T00:00:00.000Z", False),
        ("2026-04-31T00:00:00.000Z", False),
        ("2026-01-01T23:60:00.000Z", False),
        ("2026-00-01T00:00:00.000Z", False),
        ("2026-13-01T00:00:00.000Z", False),
        ("2026-01-00T00:00:00.000Z", False),
        ("2026-01-01T00:00:00.000+", False),
        ("٢٠٢٦-01-01T00:00:00.000Z", False),
    ],
)
def test_canonical_times(text: str, canonical: bool) -> None:
    assert is_canonical_time(text) is canonical
    assert given_back(text) is canonical


@pytest.mark.parametrize(
    ("number", "time"),
    [
        (-62_135_596_800_000, "0001-01-01T00:00:00.000Z"),  # the first moment Braze accepts
        (-62_135_596_800_001, None),
        (32_535_215_999_999, "3000-12-31T23:59:59.999Z"),  # and the last
        (32_535_216_000_000, None),
        (32_503_679_999, "2999-12-31T23:59:59.000Z"),  # seconds below 1e11
        (99_999_999_999, None),
        (100_000_000_000, "1973-03-03T09:46:40.000Z"),  # milliseconds from it
        (2**70, None),
        (-(2**70), None),
    ],
)
def test_epoch_time_edges(number: int, time: str | None) -> None:
    if time is None:
        with pytest.raises(CoercionError, match="outside the years Braze accepts"):
            to_time(number)
    else:
        assert to_time(number) == time
