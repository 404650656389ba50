"""Record keys: one user's submissions share a key, whatever the case or spacing."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector.config import DEFAULT_KEY_PATHS, DEFAULT_LEAD_ID_PATHS
from connector.keys import MAX_KEY_BYTES, KeyRule
from connector.mapping_paths import PathSyntaxError

RULE = KeyRule.from_settings(DEFAULT_KEY_PATHS, DEFAULT_LEAD_ID_PATHS)


def test_known_email_locations_in_order() -> None:
    assert RULE.key_for({"user_info": {"email": " A@B.co "}, "email": "x@y.z"}) == b"a@b.co"
    assert RULE.key_for({"email": "X@Y.Z"}) == b"x@y.z"
    assert RULE.key_for({"contact": {"email": "c@d.e"}}) == b"c@d.e"


def test_lead_id_is_the_fallback_and_kept_as_given() -> None:
    assert RULE.key_for({"id": "AbC-1", "user_info": {}}) == b"AbC-1"
    assert RULE.key_for({"_id": 42}) == b"42"


def test_no_usable_value_means_no_key() -> None:
    assert RULE.key_for({}) is None
    assert RULE.key_for({"email": ["a@b.c"], "id": True}) is None
    assert RULE.key_for({"email": {"nested": 1}, "id": "  "}) is None


def test_an_identity_too_long_is_skipped_for_the_next_path() -> None:
    document = {"user_info": {"email": "a" * (MAX_KEY_BYTES + 1)}, "email": "ok@x.y"}
    assert RULE.key_for(document) == b"ok@x.y"


def test_custom_paths_with_list_index() -> None:
    rule = KeyRule.from_settings("answers.0.value, hidden.external_id", "id")
    assert rule.key_for({"answers": [{"value": "U-7"}]}) == b"u-7"
    assert rule.key_for({"hidden": {"external_id": "E1"}}) == b"e1"


def test_paths_stop_at_scalars_and_missing_indexes() -> None:
    rule = KeyRule.from_settings("a.b, a.3, a.x", "z")
    assert rule.key_for({"a": "text"}) is None
    assert rule.key_for({"a": [1]}) is None


def test_paths_are_the_mapping_files_paths() -> None:
    rule = KeyRule.from_settings('results[title=E-mail].value, "user.email", list[-1]', "id")
    assert rule.key_for({"results": [{"title": " e-mail ", "value": "A@b.co"}]}) == b"a@b.co"
    assert rule.key_for({"user.email": "B@c.co", "user": {"email": "x@y.z"}}) == b"b@c.co"
    assert rule.key_for({"list": ["x@y.z", "Last@y.z"]}) == b"last@y.z"


def test_form_fields_are_read_where_the_form_nests_them() -> None:
    # user_info[email]=... in a form body is {"user_info": {"email": ...}} once parsed.
    assert RULE.key_for({"user_info": {"email": "F@orm.co"}}) == b"f@orm.co"


@pytest.mark.parametrize(
    ("paths", "message"),
    [
        ("user_info[email]", "'user_info[email]': a selector is [N], [*] or [field=value]"),
        ("email, a..b", "'a..b': a key is missing"),
        ("$source", "'$source' is a fact of the record, not a place in the lead"),
    ],
)
def test_a_bad_path_says_which_and_why(paths: str, message: str) -> None:
    with pytest.raises(PathSyntaxError, match=re.escape(message)):
        KeyRule.from_settings(paths, "id")


emails = st.emails().map(str)
padding = st.text(" \t", max_size=3)


@given(emails, padding, padding, st.booleans())
def test_email_key_ignores_case_and_spacing(email: str, left: str, right: str, upper: bool) -> None:
    shown = email.upper() if upper else email
    assert RULE.key_for({"user_info": {"email": left + shown + right}}) == email.lower().encode()


json_values: Any = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)


@given(st.dictionaries(st.text(max_size=10), json_values, max_size=6))
def test_any_document_gives_a_bounded_key_or_none(document: dict[str, Any]) -> None:
    key = RULE.key_for(document)
    assert key is None or 0 < len(key) <= MAX_KEY_BYTES
    assert RULE.key_for(document) == key
