"""The native module's text rules against Python's: white space, canonical times, epoch times."""

from __future__ import annotations

import sys

from hypothesis import given, settings
from hypothesis import strategies as st

from connector import _native
from connector.transforms import CoercionError, is_canonical_time, to_time


def test_white_space_is_what_str_isspace_says() -> None:
    expected = "".join(chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace())
    assert _native.space_characters() == expected


DIGIT = st.sampled_from("0123456789")


@st.composite
def time_shaped(draw: st.DrawFn) -> str:
    """Text of the canonical shape, with any digits: real and impossible moments alike."""
    shape = "0000-00-00T00:00:00.000Z"
    return "".join(draw(DIGIT) if c == "0" else c for c in shape)


@settings(max_examples=1000, derandomize=True)
@given(st.one_of(time_shaped(), st.text(max_size=30)))
def test_canonical_times_are_told_as_python_tells_them(text: str) -> None:
    assert _native.canonical_time(text) is is_canonical_time(text)


def test_canonical_time_edges() -> None:
    for text in (
        "2024-02-29T23:59:59.999Z",  # a leap day
        "2000-02-29T00:00:00.000Z",
        "1900-02-29T00:00:00.000Z",  # not one
        "2026-02-30T00:00:00.000Z",
        "2026-04-31T00:00:00.000Z",
        "2026-01-01T24:00:00.000Z",
        "2026-01-01T23:60:00.000Z",
        "2026-01-01T23:59:60.000Z",
        "0000-01-01T00:00:00.000Z",
        "0001-01-01T00:00:00.000Z",
        "3000-12-31T23:59:59.999Z",
        "3001-01-01T00:00:00.000Z",
        "2026-00-01T00:00:00.000Z",
        "2026-13-01T00:00:00.000Z",
        "2026-01-00T00:00:00.000Z",
        "2026-01-01T00:00:00.000+",
        "٢٠٢٦-01-01T00:00:00.000Z",  # digits, but not ASCII ones
    ):
        assert _native.canonical_time(text) is is_canonical_time(text), text


def _python_epoch_time(number: int) -> str | None:
    try:
        return to_time(number)
    except CoercionError:
        return None


EPOCHS = st.one_of(
    st.integers(min_value=-(10**14), max_value=10**14),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from(
        [0, -1, 99_999_999_999, 100_000_000_000, -100_000_000_000, 32_503_680_000, 32_503_679_999]
    ),
)


@settings(max_examples=1000, derandomize=True)
@given(EPOCHS)
def test_epoch_times_are_written_as_python_writes_them(number: int) -> None:
    assert _native.epoch_time(number) == _python_epoch_time(number)


def test_epoch_time_edges() -> None:
    # Seconds below 1e11, milliseconds from it; the first and last moments Braze accepts.
    first_ms = -62_135_596_800_000  # 0001-01-01T00:00:00.000Z
    last_ms = 32_535_215_999_999  # 3000-12-31T23:59:59.999Z
    for number in (first_ms, first_ms - 1, last_ms, last_ms + 1, 99_999_999_999, 10**11):
        assert _native.epoch_time(number) == _python_epoch_time(number), number
