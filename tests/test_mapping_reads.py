"""Readers find what sources find; arrays are never shared between rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from connector.mapping import BrazeUpdate, load_mapping
from connector.mapping_paths import MISSING, parse_path
from connector.mapping_reads import reader, typed_key
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


def test_arrays_are_never_shared(tmp_path: Path) -> None:
    path = tmp_path / "mapping.yaml"
    path.write_text(ARRAYS, encoding="utf-8")
    mapping = load_mapping(path)
    assert typed_key(mapping.fallback.attributes[0]) != typed_key(mapping.fallback.attributes[1])
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
