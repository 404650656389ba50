"""Compiled plans map every lead exactly as the rules' own methods do, failures included."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector.mapping import BrazeUpdate, Filtered, Mapping, MappingFailure, load_mapping
from connector.mapping_paths import MISSING, parse_path
from connector.mapping_plan import _Writer
from connector.mapping_reads import reader
from connector.mapping_rules import Source
from connector.transforms import Transform, transform_text
from outgrow_braze_dev.bench import lead

EVERYTHING = """\
version: 1
content_id_from: [content.id, calc_id, "ids[*]"]
identity:
  - external_id: [id, "hidden[name=external id].value", hidden.0]
  - email: {from: [user_info.email, email], transform: [trim, lower]}
  - alias: {label: lead, from: [lead, phone], transform: [sha256, {prefix: "h-"}]}
filters:
  - name: test
    drop_if: {from: [user_info.email, email], ends_with: ["@outgrow.co", "@test.io"]}
  - name: both
    drop_if:
      - {from: note, starts_with: skip}
      - {from: "tags", contains: [x, "y"]}
  - name: exact
    drop_if: {from: [code, "questions[*].answer"], equals: [drop, "42"]}
  - name: pattern
    drop_if: {from: name, matches: "^bot[0-9]+$"}
  - name: absent
    drop_if: {from: [keep, $source], exists: false}
  - name: present
    drop_if: {from: "results[title=Spam].value", exists: true}
attributes:
  score: &score {from: ["results[title=Score].value", "results[-1].value", score], type: number}
  whole: {from: [count, "questions.1.answer"], type: integer}
  agreed: {from: "questions[question=Agree?].answer", type: boolean}
  when: &when {from: [done_at, created_at, $received_at], type: time}
  tags: {from: tags, type: array, split: ","}
  answers: {from: "questions[*].answer", type: array}
  titles: {from: "results[*].title", type: array}
  name: &name [user_info.fullName, name, '"odd.key"[0]']
  note: {from: note, default: none given}
  must: {from: [code, note], required: true, transform: [upper]}
  lead: {value: true, type: boolean}
  launch: {value: 2024-05-01, type: time}
  plan: {value: gold}
  list: {value: [a, b], type: array}
  third: questions.2.answer
  source: $source
  profile: $profile
  email: email
  phone: phone
events:
  - name: submitted
    time: [created_at, $received_at]
    properties:
      score: *score
      name: *name
      when: *when
      all: {from: "questions[*].answer", type: array}
  - name: fixed
    time: {value: 2024-05-01T10:20:30Z}
  - name: timed
    time: {from: done_at, default: 1714558830}
profiles:
  - name: savings
    when: {content_id: [5F7B, 6a00]}
    attributes:
      plan: {value: savings}
      saved: {from: "results[title=Projected savings].value", type: number}
  - name: partner
    when: {source: [partner-eu, partner-us]}
    identity:
      - alias: {label: partner, from: id}
    filters: []
  - name: bare
    when: {source: bare}
    inherit: false
    identity:
      - external_id: id
"""

KEYS = [
    "id",
    "email",
    "user_info",
    "fullName",
    "results",
    "questions",
    "title",
    "value",
    "question",
    "answer",
    "count",
    "tags",
    "note",
    "name",
    "code",
    "created_at",
    "done_at",
    "lead",
    "phone",
    "hidden",
    "content",
    "calc_id",
    "ids",
    "keep",
    "score",
    "odd.key",
]
WORDS = [
    "Score",
    "score ",
    "Spam",
    "Projected savings",
    "Agree?",
    "external id",
    "$1,234.50",
    "75%",
    "2024-05-01",
    "1714558830",
    "a@outgrow.co",
    " A@B.co ",
    "yes",
    "skip me",
    "x,y, z",
    "drop",
    "bot7",
    "5f7b",
    "",
    "  ",
]
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.sampled_from(WORDS)
)
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS), children, max_size=4)
    ),
    max_leaves=25,
)
identities = st.sampled_from(["u1", " U2 ", "", " a@B.co ", "x@outgrow.co"]) | scalars
CANONICAL_ISH = ["2024-05-01T10:20:30.000Z", "2026-02-30T10:20:30.000Z", "0000-01-01T00:00:00.000Z"]
times = (
    st.sampled_from(["2024-05-01T10:20:30Z", "1714558830", "Wed May 01 2024", "soon"])
    | st.sampled_from(CANONICAL_ISH)
    | scalars
)
entries = st.fixed_dictionaries(
    {},
    optional={
        "title": st.sampled_from(WORDS) | scalars,
        "value": values,
        "question": st.sampled_from(WORDS),
        "answer": values,
    },
)
fields = {
    "id": identities,
    "email": identities,
    "user_info": st.fixed_dictionaries({}, optional={"email": identities, "fullName": scalars}),
    "lead": identities,
    "phone": identities,
    "hidden": values,
    "code": scalars,
    "note": scalars,
    "name": scalars,
    "tags": values,
    "count": scalars,
    "created_at": times,
    "done_at": times,
    "results": st.lists(entries, max_size=4),
    "questions": st.lists(entries, max_size=4),
    "calc_id": st.sampled_from(["5f7b", " 6A00 ", "x"]) | scalars,
}
documents = st.builds(
    lambda known, other: {**other, **known},
    st.fixed_dictionaries({}, optional=fields),
    st.dictionaries(st.sampled_from(KEYS), values, max_size=4),
)
sources = st.sampled_from(["default", "default", "default", "partner-eu", "bare", "", " "])
received = st.none() | st.integers(0, 2**41)


def outcome(mapping: Mapping, rules: bool, document: Any, source: str, at: int | None) -> str:
    """What mapping gives, written out with its order: the result, or the failure's reason."""
    apply = mapping.apply_rules if rules else mapping.apply
    try:
        return repr(apply(document, source=source, received_at_ms=at))
    except MappingFailure as failure:
        return repr(failure)


@pytest.fixture(scope="module")
def everything(tmp_path_factory: pytest.TempPathFactory) -> Mapping:
    path = tmp_path_factory.mktemp("plan") / "mapping.yaml"
    path.write_text(EVERYTHING, encoding="utf-8")
    return load_mapping(path)


@pytest.fixture(scope="module")
def default() -> Mapping:
    return load_mapping()


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(document=documents, source=sources, at=received)
def test_plans_give_what_the_rules_give(
    everything: Mapping, default: Mapping, document: dict[str, Any], source: str, at: int | None
) -> None:
    for mapping in (everything, default):
        assert outcome(mapping, False, document, source, at) == outcome(
            mapping, True, document, source, at
        )


@settings(max_examples=200)
@given(index=st.integers(0, 10**6), changes=st.dictionaries(st.sampled_from(KEYS), values))
def test_plans_give_what_the_rules_give_for_leads(
    default: Mapping, everything: Mapping, index: int, changes: dict[str, Any]
) -> None:
    document = {**lead(index), **changes}
    for mapping in (default, everything):
        assert outcome(mapping, False, document, "default", 1) == outcome(
            mapping, True, document, "default", 1
        )


def test_plans_cut_long_text_as_the_rules_do(default: Mapping, everything: Mapping) -> None:
    long = "é" * 300
    document = {**lead(1), "calc_name": long, "type": long, "name": long, "note": long}
    for mapping in (default, everything):
        assert outcome(mapping, False, document, "default", 1) == outcome(
            mapping, True, document, "default", 1
        )


def test_a_bench_lead_maps_to_an_update(default: Mapping) -> None:
    result = default.apply(lead(7), source="default", received_at_ms=1)
    assert isinstance(result, BrazeUpdate)
    assert result.user_key == "email:bench.user.7@example.com"
    assert result.attributes["outgrow_quiz_score"] == 72
    assert result.events[0]["properties"]["segment"] == "Growth Stage"


def test_a_test_lead_is_filtered(default: Mapping) -> None:
    document = {**lead(1), "user_info": {"email": " Someone@Outgrow.co "}}
    assert default.apply(document, source="default", received_at_ms=1) == Filtered(
        "outgrow_test_lead"
    )


def test_other_mappings_are_mapped_by_the_rules(default: Mapping) -> None:
    class Lead(dict[str, Any]):
        pass

    document = Lead(lead(3))
    assert default.apply(document, source="default", received_at_ms=1) == default.apply_rules(
        document, source="default", received_at_ms=1
    )


def test_a_failure_names_the_path_that_held_the_value(everything: Mapping) -> None:
    document = {"id": "u1", "code": "c", "results": [{"title": "Score", "value": "many"}]}
    with pytest.raises(MappingFailure) as caught:
        everything.apply(document, source="default", received_at_ms=1)
    assert caught.value.reason == (
        "attribute 'score': the value at results[title=Score].value is not a number"
    )


def test_readers_of_paths_not_from_a_file_ask_the_source() -> None:
    source = Source((parse_path("a"),))
    manual = Source((type(source.paths[0])("*", ()),))
    assert reader(source)({"a": 1}, {}) == 1
    assert reader(source)({"a": " "}, {}) is MISSING
    assert reader(manual)({"a": 1}, {}) == {"a": 1}


HOSTILE = r"""
version: 1
identity:
  - alias: {label: "l'a\"b\\c\nd", from: 'x'') or __import__(''os'') #.k'}
filters:
  - name: "f'\n\"g"
    drop_if: {from: "q'", equals: "stop"}
attributes:
  "a'b\"c\\d\ne": 'p''.q\'
  "{0}": {value: "'; raise SystemExit #"}
events:
  - name: "e')\n"
    time: {value: 2024-05-01T10:20:30Z}
    properties:
      "p'": 'p''.q\'
"""


def test_names_and_keys_from_the_file_are_literals_in_the_plan(tmp_path: Path) -> None:
    path = tmp_path / "mapping.yaml"
    path.write_text(HOSTILE, encoding="utf-8")
    mapping = load_mapping(path)
    document = {"x') or __import__('os') #": {"k": "U1"}, "p'": {"q\\": "v"}, "q'": "go"}
    result = mapping.apply(document, source="default", received_at_ms=1)
    assert result == mapping.apply_rules(document, source="default", received_at_ms=1)
    assert isinstance(result, BrazeUpdate)
    assert result.user_key == "alias:l'a\"b\\c\nd:U1"
    assert result.attributes == {
        "a'b\"c\\d\ne": "v",
        "{0}": "'; raise SystemExit #",
        "_update_existing_only": False,
    }
    assert result.events[0]["name"] == "e')\n"
    assert result.events[0]["properties"] == {"p'": "v"}
    stopped = {**document, "q'": " STOP "}
    assert mapping.apply(stopped, source="default", received_at_ms=1) == Filtered("f'\n\"g")


def test_a_plan_shows_its_own_lines_in_tracebacks(default: Mapping) -> None:
    plan = default.plans[default.fallback.name]
    lines = inspect.getsource(plan)
    assert lines.startswith("def plan(document, source, received_at_ms):")
    assert "'outgrow_quiz_score'" in lines


transforms = st.lists(
    st.sampled_from(["trim", "lower", "upper", "sha256"]).map(Transform)
    | st.builds(Transform, st.sampled_from(["prefix", "suffix"]), st.text(max_size=3)),
    max_size=4,
)


@given(st.text(max_size=20), transforms)
def test_identity_text_is_shaped_as_transform_text_shapes_it(
    default: Mapping, text: str, steps: list[Transform]
) -> None:
    writer = _Writer(default.fallback)
    expression = writer.shaped("text", tuple(steps))
    shaped = eval(expression, dict(writer.constants), {"text": text})  # noqa: S307  # our own
    assert shaped == transform_text(text, steps)


def test_identity_text_is_stripped_once(default: Mapping) -> None:
    writer = _Writer(default.fallback)
    steps = tuple(map(Transform, ["trim", "trim", "lower", "trim"]))
    assert writer.shaped("text.strip()", steps) == "text.strip().lower().strip()"
    assert ".strip().strip()" not in writer.source()
