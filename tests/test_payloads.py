"""Reading webhook bodies: JSON objects and form fields, with a clear refusal otherwise."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector.payloads import FORM, JSON, InvalidBody, parse


def test_json_object_is_read_as_is() -> None:
    assert parse(b'{"a": {"b": [1, 2]}, "c": null}', JSON) == {"a": {"b": [1, 2]}, "c": None}


@pytest.mark.parametrize(
    ("body", "mime", "code"),
    [
        (b"", JSON, "empty_body"),
        (b" \t\r\n", FORM, "empty_body"),
        (b"{", JSON, "invalid_json"),
        (b"{} {}", JSON, "invalid_json"),
        (b"[]", JSON, "not_an_object"),
        (b"3", JSON, "not_an_object"),
        (b"a=%FF", FORM, "invalid_form"),
        (b"\xff=1", FORM, "invalid_form"),
        (b"novalue", FORM, "invalid_form"),
    ],
)
def test_unreadable_bodies_name_the_rule(body: bytes, mime: str, code: str) -> None:
    with pytest.raises(InvalidBody) as caught:
        parse(body, mime)
    assert caught.value.code == code
    assert caught.value.message


def test_form_brackets_nest_and_first_repeat_wins() -> None:
    body = b"user_info%5Bemail%5D=a%40b.co&user_info%5BfullName%5D=A&x=1&x=2&empty="
    assert parse(body, FORM) == {
        "user_info": {"email": "a@b.co", "fullName": "A"},
        "x": "1",
        "empty": "",
    }


def test_form_bracket_key_under_a_plain_value_keeps_the_plain_value() -> None:
    assert parse(b"a=1&a%5Bb%5D=2", FORM) == {"a": "1"}


field_names = st.text(st.characters(blacklist_characters="[]", codec="utf-8"), min_size=1)


@given(st.dictionaries(field_names, st.text(st.characters(codec="utf-8")), min_size=1))
def test_any_form_round_trips(fields: dict[str, str]) -> None:
    body = urlencode(fields).encode()
    assert parse(body, FORM) == fields


@given(st.binary(max_size=200), st.sampled_from([JSON, FORM]))
def test_any_bytes_parse_or_raise_invalid_body(body: bytes, mime: str) -> None:
    try:
        document = parse(body, mime)
    except InvalidBody as exc:
        assert exc.code in {"empty_body", "invalid_json", "not_an_object", "invalid_form"}
    else:
        assert isinstance(document, dict)
