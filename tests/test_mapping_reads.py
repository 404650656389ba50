"""Readers find what sources find; rules reading or typing alike share one value per record."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from connector.mapping import BrazeUpdate, load_mapping
from connector.mapping_paths import MISSING, parse_path
from connector.mapping_reads import Reads, reader, remembered
from connector.mapping_rules import Source

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.sampled_from(["", " ", "x"]),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.sampled_from(["a", "b", "0", "title"]), children, max_size=3)
    ),
    max_leaves=15,
)
documents = st.dictionaries(st.sampled_from(["a", "b", "c"]), json_values, max_size=3)
texts = ["a", "a.b", "b.0", "a[0].b", "a[-1]", "a[title=x].b", "a[*].b", "c", "$source", "$profile"]
sources = st.lists(st.sampled_from(texts), min_size=1, max_size=4).map(
    lambda paths: Source(tuple(parse_path(text) for text in paths))
)
metas = st.fixed_dictionaries({"source": st.sampled_from(["acme", " ", ""]), "profile": st.none()})


@given(sources, documents, metas)
def test_readers_find_what_the_source_finds(
    source: Source, document: dict[str, Any], meta: dict[str, Any]
) -> None:
    found = source.first(document, meta)
    assert reader(source)(document, meta) == (MISSING if found is None else found[1])


def test_remembered_values_are_worked_out_once_per_meta() -> None:
    calls: list[int] = []

    def compute(document: dict[str, Any], meta: dict[str, Any]) -> Any:
        calls.append(1)
        return MISSING

    read = remembered("#0", compute)
    meta: dict[str, Any] = {}
    assert read({}, meta) is MISSING and read({}, meta) is MISSING
    assert read({}, {}) is MISSING
    assert len(calls) == 2


def test_fields_typed_alike_share_a_slot_and_sources_read_twice_are_remembered() -> None:
    profile = load_mapping().fallback
    reads = Reads(profile)
    score = next(rule for rule in profile.attributes if rule.name == "outgrow_quiz_score")
    property_score = next(rule for rule in profile.events[0].properties if rule.name == "score")
    lead_id = next(rule for rule in profile.events[0].properties if rule.name == "lead_id")
    assert reads.typed_slot(score) == reads.typed_slot(property_score) is not None
    assert reads.typed_slot(lead_id) is None
    meta: dict[str, Any] = {"source": "default"}
    email = {"user_info": {"email": "a@b.co"}}
    assert reads.reader(profile.identity[1].source)(email, meta) == "a@b.co"
    assert any(key.startswith("#") for key in meta)


def test_arrays_are_never_shared(tmp_path: Path) -> None:
    path = tmp_path / "mapping.yaml"
    path.write_text(ARRAYS, encoding="utf-8")
    mapping = load_mapping(path)
    reads = Reads(mapping.fallback)
    assert all(reads.typed_slot(rule) is None for rule in mapping.fallback.attributes)
    result = mapping.apply({"id": "u", "tags": ["x"]}, source="default", received_at_ms=None)
    assert isinstance(result, BrazeUpdate)
    assert result.attributes["a"] == result.attributes["b"] == ["x"]
    assert result.attributes["a"] is not result.attributes["b"]


ARRAYS = """\
version: 1
identity:
  - external_id: id
attributes:
  a: {from: tags, type: array}
  b: {from: tags, type: array}
"""
