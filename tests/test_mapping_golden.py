"""The mapping engine gives, byte for byte, what the golden corpus recorded.

tests/data/golden/cases.jsonl.gz holds records (raw value bytes, content type, source label,
received-at time) and, for each mapping of tests/data/golden/mappings/, what mapping the record
gave when it was recorded (see tests/data/golden/README.md): the /users/track objects as JSON,
the filter that dropped it, or the failure's stage and reason.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from connector.mapping import (
    BrazeUpdate,
    Filtered,
    Mapping,
    MappingFailure,
    load_mapping,
    map_record,
)

GOLDEN = Path(__file__).resolve().parent / "data" / "golden"
Case = dict[str, Any]


def cases() -> Iterator[Case]:
    with gzip.open(GOLDEN / "cases.jsonl.gz", "rt", encoding="utf-8") as lines:
        for line in lines:
            yield json.loads(line)


def value_of(case: Case) -> bytes:
    if "value_hex" in case:
        return bytes.fromhex(case["value_hex"])
    text: str = case["value"]
    return text.encode("utf-8")


def written(payload: Any) -> str | list[str]:
    """An object as the JSON a request carries; see tests/data/golden/README.md."""
    try:
        data = payload if type(payload) is bytes else orjson.dumps(payload)
    except TypeError:
        return ["unwritable", repr(payload)]
    return data.decode()


def outcome(mapping: Mapping, case: Case) -> list[Any]:
    """What mapping the case gives now, written as the corpus writes it."""
    try:
        result = map_record(
            mapping,
            value_of(case),
            case["content_type"],
            source=case["source"],
            received_at_ms=case["received_at"],
        )
    except MappingFailure as failure:
        return ["failure", failure.stage, failure.reason]
    if type(result) is Filtered:
        return ["filtered", result.rule]
    assert type(result) is BrazeUpdate, repr(result)
    payload = result.attribute_payload
    attributes = None if payload is None else written(payload)
    return ["update", result.user_key, attributes, [written(e) for e in result.event_payloads]]


@pytest.fixture(scope="module")
def mappings() -> dict[str, Mapping]:
    return {path.stem: load_mapping(path) for path in sorted(GOLDEN.glob("mappings/*.yaml"))}


def test_the_corpus_covers_every_outcome_and_mapping(mappings: dict[str, Mapping]) -> None:
    kinds = {expected[0] for case in cases() for expected in case["expect"].values()}
    assert kinds == {"update", "filtered", "failure"}
    assert all(set(case["expect"]) == set(mappings) for case in cases())
    assert sum(1 for _ in cases()) > 4000


def test_every_record_maps_as_recorded(mappings: dict[str, Mapping]) -> None:
    differing = [
        f"{name} {case.get('value', case.get('value_hex'))[:160]!r} "
        f"{case['content_type']!r} {case['source']!r} {case['received_at']!r}:\n"
        f"  got      {got!r}\n  expected {expected!r}"
        for case in cases()
        for name, expected in case["expect"].items()
        if (got := outcome(mappings[name], case)) != expected
    ]
    assert not differing, f"{len(differing)} differ:\n" + "\n".join(differing[:20])
