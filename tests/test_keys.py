"""Record keys: the user's identity as the mapping computes it, else the lead id, else none."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector.keys import MAX_KEY_BYTES, record_key
from connector.mapping import BrazeUpdate, Mapping, MappingFailure, load_mapping

SHIPPED = load_mapping()


def key(document: dict[str, Any], mapping: Mapping = SHIPPED, source: str = "default") -> Any:
    return record_key(mapping, document, source, 1_714_558_830_000)


def mapping_of(text: str, tmp_path: Path) -> Mapping:
    path = tmp_path / "mapping.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return load_mapping(path)


def test_the_shipped_identity_rules_in_order() -> None:
    assert key({"user_info": {"email": " A@B.co "}, "email": "x@y.z"}) == b"email:a@b.co"
    assert key({"email": "X@Y.Z"}) == b"email:x@y.z"
    assert key({"contact": {"email": "c@d.e"}}) == b"email:c@d.e"
    hidden = {"hidden_fields": {"external_id": " crm-7 "}, "email": "x@y.z"}
    assert key(hidden) == b"external_id:crm-7"


def test_the_lead_id_is_the_fallback_and_kept_as_given() -> None:
    assert key({"id": "AbC-1", "user_info": {}}) == b"lead:AbC-1"
    assert key({"_id": 42}) == b"lead:42"
    assert key({"id": {"oid": 1}, "lead_id": " L-9 "}) == b"lead:L-9"


def test_no_usable_value_means_no_key() -> None:
    assert key({}) is None
    assert key({"email": ["a@b.c"], "id": True}) is None
    assert key({"email": {"nested": 1}, "id": "  "}) is None


def test_without_lead_id_from_a_lead_without_identity_has_no_key(tmp_path: Path) -> None:
    mapping = mapping_of("version: 1\nidentity:\n  - email: email\n", tmp_path)
    assert key({"email": "A@b.co", "id": "L1"}, mapping) == b"email:A@b.co"  # no transform
    assert key({"id": "L1"}, mapping) is None


def test_keys_too_long_are_passed_over() -> None:
    long_email = "a" * MAX_KEY_BYTES + "@x.y"
    assert key({"email": long_email, "id": "L1"}) == b"lead:L1"
    assert key({"email": long_email, "id": "L" * MAX_KEY_BYTES}) is None


def test_the_profile_chosen_for_the_lead_gives_the_identity(tmp_path: Path) -> None:
    mapping = mapping_of(
        """\
        version: 1
        lead_id_from: id
        identity:
          - email: {from: email, transform: [lower]}
        filters:
          - name: test
            drop_if: {from: email, ends_with: "@outgrow.co"}
        profiles:
          - name: partner
            when: {source: partner}
            identity:
              - alias: {label: partner, from: ref}
        """,
        tmp_path,
    )
    lead = {"email": "T@outgrow.co", "ref": "R1", "id": "L1"}
    assert key(lead, mapping) == b"email:t@outgrow.co"  # filters do not decide keys
    assert key(lead, mapping, source="partner") == b"alias:partner:R1"
    assert key({"email": "a@b.co", "id": "L1"}, mapping, source="partner") == b"lead:L1"


def test_form_fields_are_read_where_the_form_nests_them() -> None:
    # user_info[email]=... in a form body is {"user_info": {"email": ...}} once parsed.
    assert key({"user_info": {"email": "F@orm.co"}}) == b"email:f@orm.co"


emails = st.emails().map(str)
padding = st.text(" \t", max_size=3)


@given(emails, padding, padding, st.booleans())
def test_email_key_ignores_case_and_spacing(email: str, left: str, right: str, upper: bool) -> None:
    shown = email.upper() if upper else email
    expected = b"email:" + email.lower().encode()
    assert key({"user_info": {"email": left + shown + right}}) == expected


json_values: Any = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)
places = st.sampled_from(["email", "id", "_id", "external_id", "user_info", "hidden_fields"])


@given(st.dictionaries(places | st.text(max_size=10), json_values, max_size=6))
def test_the_key_is_the_identity_the_worker_maps(document: dict[str, Any]) -> None:
    """What the worker's partition check relies on: a lead it maps to a user was keyed by it."""
    found = key(document)
    assert found is None or 0 < len(found) <= MAX_KEY_BYTES
    try:
        update = SHIPPED.apply(document, source="default", received_at_ms=1_714_558_830_000)
    except MappingFailure:
        return
    if isinstance(update, BrazeUpdate):
        assert found == update.user_key.encode()


@pytest.mark.parametrize("source", ["default", "other"])
def test_identity_key_and_lead_id_of_the_mapping(source: str) -> None:
    lead = {"email": " Jane@Example.com ", "id": 7}
    assert SHIPPED.identity_key(lead, source) == "email:jane@example.com"
    assert SHIPPED.lead_id(lead, source) == "7"
    assert SHIPPED.identity_key({"id": 7}, source) is None
