"""Record the golden corpus of tests/data/golden/ with today's engines, checking they agree.

Run once, before the engines become one: `.venv/bin/python -m tests.golden_record`. Each record
(raw value bytes, content type, source label, received-at time) is mapped by every mapping of
tests/data/golden/mappings/ through each entry point the worker has (the native plan from the
headers, the native plan from the body, the generated Python plan, the rules' own methods); they
must all give the same /users/track objects, byte for byte, the same filter, or the same failure.
"""

from __future__ import annotations

import gzip
import json
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from connector import payloads
from connector.mapping import (
    BrazeUpdate,
    Filtered,
    Mapping,
    MappingFailure,
    load_mapping,
    map_record,
)
from connector.mapping_results import payload_json
from connector.worker import map_python, map_value, record_facts
from outgrow_braze_dev.backlog import raw_record
from tests import test_mapping as tm
from tests import test_mapping_native as tn
from tests import test_mapping_plan as tp

GOLDEN = Path(__file__).resolve().parent / "data" / "golden"
SAMPLES = Path(__file__).resolve().parent / "data" / "outgrow"
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"

MAPPINGS = {
    **{f"native_{name}": text for name, text in tn.FILES.items()},
    "plan_everything": tp.EVERYTHING,
    "plan_hostile": tp.HOSTILE.lstrip("\n"),
    "attributes": tm.ATTRIBUTES,
    "filters": tm.FILTERS,
    "profiles": tm.PROFILES,
    "kitchen_sink": tm.KITCHEN_SINK,
}

Record = tuple[bytes, str, str, int | None]


def examples(strategy: st.SearchStrategy[Any], count: int) -> list[Any]:
    """`count` examples of a strategy, the same on every run."""
    found: list[Any] = []

    @settings(
        max_examples=count,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def collect(example: Any) -> None:
        found.append(example)

    collect()
    return found


def json_bytes(document: Any) -> bytes:
    """A document as orjson writes it, or as json writes what orjson refuses (huge ints, inf)."""
    try:
        return orjson.dumps(document)
    except orjson.JSONEncodeError:
        return json.dumps(document, ensure_ascii=False).encode("utf-8", "surrogatepass")


def form_of(document: dict[str, Any]) -> bytes:
    """A lead as a PHP-style form: scalars as text, one level of nesting as `a[b]`."""
    from urllib.parse import quote

    pairs = []
    for key, value in document.items():
        if isinstance(value, dict):
            pairs += [(f"{key}[{inner}]", item) for inner, item in value.items()]
        else:
            pairs.append((key, value))
    fields = [
        f"{quote(str(name), safe='[]')}={quote(str(value), safe='')}"
        for name, value in pairs
        if isinstance(value, str | int | float) and not isinstance(value, bool)
    ]
    return "&".join(fields).encode("utf-8", "surrogatepass")


HOSTILE_FORMS = [
    b"",
    b"email=a%40b.co",
    b"user_info%5Bemail%5D=A%40b.co&score=75%25&calc_name=Quiz",
    b"user_info[email]=%20Jane%40Example.com%20&user_info[fullName]=Jane",
    b"email=a%40b.co&x",
    b"email=a%40b.co&&score=1",
    b"email=%ff%40b.co",
    b"email=\xff",
    b"email=a%40b.co&email=b%40c.co",
    b"email=a%40b.co&user_info=x&user_info[email]=c%40d.co",
    b"user_info[email]=c%40d.co&user_info=x",
    b"results[0][title]=Score&results[0][value]=72&email=a%40b.co",
    b"email=a%40b.co&created_at=2024-05-01T10%3A20%3A30.000Z&score=%241%2C234.50",
    b"email=a%40b.co&score=NaN&count=1e999",
    b"email=a%40b.co&calc_id=5f7b&results[title]=x",
    b"email=a%40outgrow.co",
    b"external_id=%20%20&email=%E2%80%83&id=u1",
    b"a[=1&email=a%40b.co",
    b"a[]=1&email=a%40b.co",
    b"email=+a%40b.co+",
    b"=x&email=a%40b.co",
    b"email=a%40b.co;score=1",
    b"%E2%82%AC=1&email=%C3%9F%40x.co",
]
CONTENT_TYPES = [
    "application/json; charset=utf-8",
    "Application/JSON",
    " application/json ",
    "text/plain",
    "",
    "application/x-www-form-urlencoded;charset=UTF-8",
    "multipart/form-data",
]
HOSTILE_JSON = [
    b'{"email":"a@b.co","score":true,"count":false,"done_at":true}',
    b'{"email":"a@b.co","score":"NaN","count":"Infinity","level":"-inf"}',
    b'{"email":"a@b.co","score":[1,[2,[3]]],"tags":[["a"],{"b":1}]}',
    b'{"email":"STRASSE@STRA\xc3\x9fE.DE","calc_name":"\xef\xac\x81 DEMO"}',
    b'{"email":"\\u0130@x.co","type":"\\u1e9e"}',
    b'{"email":"   ","external_id":"\\t","id":"\\u3000","user_info":{"email":""}}',
    b'{"email":"a@b.co","user_info":' + b'{"user_info":' * 300 + b"1" + b"}" * 301,
    b'{"email":"a@b.co","results":[{"title":"Score","value":1e308},{"title":"Score","value":2}]}',
    b'{"email":"a@b.co","score":123456789012345678901234567890}',
    b'{"email":"a@b.co","score":-123456789012345678901234567890.5e10}',
    b'{"email":1e16,"external_id":1.5,"id":-0.0}',
    b'{"email":"a@b.co","created_at":-62135596800001,"done_at":253402300800000}',
]


def records() -> Iterator[Record]:
    """Every record of the corpus."""
    yield from generated()
    yield from hand_written()
    yield from samples()
    yield from bench_leads()


def generated() -> Iterator[Record]:
    native = st.tuples(tn.bodies, tn.sources, tn.received)
    for body, source, at in examples(native, 1500):
        yield body, JSON, source, at
    plan = st.tuples(tp.documents, tp.sources, tp.received)
    for document, source, at in examples(plan, 500):
        yield json_bytes(document), JSON, source, at
    sink = st.tuples(tm.documents, st.none() | st.integers(0, 2**41))
    for document, at in examples(sink, 300):
        yield json_bytes(document), JSON, "default", at
    forms = st.tuples(tn.documents, tn.sources, tn.received)
    for document, source, at in examples(forms, 300):
        yield form_of(document), FORM, source, at
    for body in examples(st.binary(max_size=200), 100):
        yield body, JSON, "default", tn.RECEIVED_AT_MS
        yield body, FORM, "default", tn.RECEIVED_AT_MS


def hand_written() -> Iterator[Record]:
    for body in tn.HAND_WRITTEN + HOSTILE_JSON:
        for source, at in tn.HAND_SOURCES:
            yield body, JSON, source, at
    for body in HOSTILE_FORMS:
        yield body, FORM, "default", tn.RECEIVED_AT_MS
    for lead in ("documented", "crm"):
        for where in tn.SPLICE_AT:
            for raw in tn.RAW_SCALARS:
                yield tn.spliced(tn.PLAIN[lead], where, raw), JSON, "default", tn.RECEIVED_AT_MS
    for document in tn.PLAIN.values():
        for source, at in tn.PLAIN_SOURCES:
            yield orjson.dumps(document), JSON, source, at
    body = orjson.dumps(tn.PLAIN["documented"])
    for content_type in CONTENT_TYPES:
        yield body, content_type, "default", tn.RECEIVED_AT_MS


def samples() -> Iterator[Record]:
    for path in sorted(SAMPLES.glob("*.json")):
        body = path.read_bytes()
        for source, at in [("default", tn.RECEIVED_AT_MS), ("partner-eu", None), ("bare", 0)]:
            yield body, JSON, source, at
        yield body, "application/json; charset=utf-8", "acme", tn.RECEIVED_AT_MS
        document = orjson.loads(body)
        yield form_of(document), FORM, "default", tn.RECEIVED_AT_MS


def bench_leads() -> Iterator[Record]:
    for index in range(300):
        _, value, headers = raw_record(index, tn.BENCH_USERS)
        content_type, source, at = record_facts(headers)
        yield value, content_type, source, at


# --- the outcomes ----------------------------------------------------------------------------


def outcome(run: Callable[[], Any]) -> list[Any]:
    """What one entry point gives, written out: the JSON objects, the filter, or the failure."""
    try:
        result = run()
    except MappingFailure as failure:
        return ["failure", failure.stage, failure.reason]
    except Exception as exc:  # a defect of the engine, recorded for the report
        return ["error", repr(exc)]
    if type(result) is Filtered:
        return ["filtered", result.rule]
    if type(result) is not BrazeUpdate:
        return ["unexpected", repr(result)]
    payload = result.attribute_payload
    attributes = None if payload is None else written(payload)
    return ["update", result.user_key, attributes, [written(e) for e in result.event_payloads]]


def written(payload: Any) -> str | list[str]:
    """An object as JSON text; what orjson cannot write (an integer beyond 64 bits, which only a
    received-at time no header can carry gives) as ["unwritable", its repr]."""
    try:
        return payload_json(payload).decode()
    except TypeError:
        return ["unwritable", repr(payload)]


def by_rules(mapping: Mapping, value: bytes, content_type: str, source: str, at: int | None) -> Any:
    """map_record(), with the parsed lead mapped by the rules' own methods."""
    try:
        map_record(mapping, value, content_type, source=source, received_at_ms=at)
    except MappingFailure as failure:
        if failure.stage == "parse":
            raise
    mime = content_type.split(";", 1)[0].strip().lower()
    document = payloads.parse(value, mime)
    return mapping.apply_rules(document, source=source, received_at_ms=at)


def headers_of(content_type: str, source: str, at: int | None) -> list[tuple[str, bytes | None]]:
    received = None if at is None else str(at).encode()
    return [
        ("content-type", content_type.encode()),
        ("received-at", received),
        ("source", source.encode("utf-8", "surrogatepass")),
    ]


def recorded(mapping: Mapping, record: Record) -> tuple[list[Any], list[str]]:
    """The outcome of one record, and how the entry points disagree about it, if they do."""
    value, content_type, source, at = record
    found = {
        "map_record": outcome(
            lambda: map_record(mapping, value, content_type, source=source, received_at_ms=at)
        ),
        "map_value": outcome(lambda: map_value(mapping, value, content_type, source, at)),
        "map_python": outcome(lambda: map_python(mapping, value, content_type, source, at)),
        "rules": outcome(lambda: by_rules(mapping, value, content_type, source, at)),
    }
    expected = found["map_record"]
    problems = [
        f"{name}: {got!r} != {expected!r}" for name, got in found.items() if got != expected
    ]
    if mapping.native is not None:
        headers = headers_of(content_type, source, at)
        facts = record_facts(headers)

        def taken() -> Any:
            result = mapping.native.take(headers, value)  # type: ignore[union-attr]
            return result[0] if result is not None else map_python(mapping, value, *facts)

        through = outcome(taken)
        python = outcome(lambda: map_python(mapping, value, *facts))
        if through != python:
            problems.append(f"take: {through!r} != {python!r}")
    return expected, problems


def value_fields(value: bytes) -> dict[str, str]:
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return {"value_hex": value.hex()}
    return {"value": text}


def main() -> None:
    folder = GOLDEN / "mappings"
    folder.mkdir(parents=True, exist_ok=True)
    mappings = {}
    shipped = (
        Path(__file__).resolve().parent.parent / "connector" / "default_mapping.yaml"
    ).read_text()
    for name, text in {"shipped": shipped, **MAPPINGS}.items():
        path = folder / f"{name}.yaml"
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        mappings[name] = load_mapping(path)
    seen: set[Record] = set()
    lines, problems = [], []
    for record in records():
        if record in seen:
            continue
        seen.add(record)
        value, content_type, source, at = record
        expect = {}
        for name, mapping in mappings.items():
            expect[name], found = recorded(mapping, record)
            problems += [f"{name} {value[:100]!r} {source!r} {at!r}: {p}" for p in found]
        line = {
            **value_fields(value),
            "content_type": content_type,
            "source": source,
            "received_at": at,
            "expect": expect,
        }
        lines.append(json.dumps(line, ensure_ascii=False, sort_keys=True))
    data = ("\n".join(lines) + "\n").encode("utf-8", "surrogatepass")
    with gzip.GzipFile(GOLDEN / "cases.jsonl.gz", "wb", mtime=0) as out:
        out.write(data)
    print(f"{len(lines)} records x {len(mappings)} mappings, {len(data)} bytes")
    print(f"{len(problems)} disagreements")
    for problem in problems[:40]:
        print(problem)


if __name__ == "__main__":
    main()
