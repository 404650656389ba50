"""Mapping leads to Braze objects: identity, attributes, events, filters, profiles, raw records."""

from __future__ import annotations

import hashlib
import json
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector import cli
from connector.mapping import (
    MAPPING_VERSION_HEADER,
    BrazeUpdate,
    Filtered,
    Mapping,
    MappingFailure,
    load_mapping,
    map_record,
)
from connector.transforms import MAX_TEXT
from outgrow_braze_dev.bench import lead

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = Path(__file__).resolve().parent / "data" / "outgrow"
GOLDEN = Path(__file__).resolve().parent / "data" / "golden" / "mappings"
RECEIVED_AT_MS = 1714558830000  # 2024-05-01T10:20:30.000Z
RECEIVED_AT = "2024-05-01T10:20:30.000Z"
HEAD = "version: 1\nidentity:\n  - email: email\n"


def sample(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SAMPLES / name).read_text(encoding="utf-8"))
    return loaded


def mapping_of(text: str, tmp_path: Path) -> Mapping:
    path = tmp_path / "mapping.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return load_mapping(path)


def apply(mapping: Mapping, document: dict[str, Any], source: str = "default") -> Any:
    return mapping.apply(document, source=source, received_at_ms=RECEIVED_AT_MS)


def failure(mapping: Mapping, document: dict[str, Any], source: str = "default") -> MappingFailure:
    with pytest.raises(MappingFailure) as caught:
        apply(mapping, document, source)
    return caught.value


@pytest.fixture(scope="module")
def default() -> Mapping:
    return load_mapping()


# --- the shipped mapping -----------------------------------------------------------------------


def test_default_mapping_reproduces_the_outgrow_guide(default: Mapping) -> None:
    update = apply(default, sample("graded_quiz.json"))
    assert update == BrazeUpdate(
        user_key="email:jane.doe@example.com",
        identity={"email": "jane.doe@example.com"},
        attributes={
            "outgrow_quiz_score": 72,
            "outgrow_custom_segment": "Growth Stage",
            "outgrow_last_content": "What's your marketing maturity?",
            "outgrow_last_submitted_at": "2024-05-01T10:20:30.000Z",
        },
        events=(
            {
                "name": "outgrow_submission",
                "time": "2024-05-01T10:20:30.000Z",
                "properties": {
                    "content_id": "5892d26dcbff7e0b1c34bf65",
                    "content_name": "What's your marketing maturity?",
                    "content_type": "Quiz",
                    "lead_id": "65f1c2a9e4b0a1b2c3d4e5f6",
                    "score": 72,
                    "segment": "Growth Stage",
                    "source": "default",
                },
            },
        ),
        event_keys=("65f1c2a9e4b0a1b2c3d4e5f6",),  # the lead id, from lead_id_from
    )


def test_default_mapping_prefers_a_hidden_external_id(default: Mapping) -> None:
    update = apply(default, sample("hidden_external_id.json"))
    assert update.user_key == "external_id:crm-000417"
    assert update.identity == {"external_id": "crm-000417"}
    assert update.attributes["outgrow_quiz_score"] == 58
    assert update.attributes["outgrow_custom_segment"] == "Getting There"


@pytest.mark.parametrize(
    "document",
    [
        {"external_id": "X1"},
        {"hidden_fields": {"external_id": "X1"}},
        {"hiddenFields": {"external_id": "X1"}},
        {"hidden": {"external_id": "X1"}},
        {"user_info": {"external_id": "X1", "email": "a@b.co"}},
        {"url_params": {"external_id": "X1"}},
        {"query_params": {"external_id": "X1"}},
        {"utm": {"external_id": "X1"}},
    ],
)
def test_default_mapping_looks_for_the_external_id_in_plausible_places(
    default: Mapping, document: dict[str, Any]
) -> None:
    assert apply(default, document).identity == {"external_id": "X1"}


@pytest.mark.parametrize(
    "document",
    [
        {"user_info": {"email": "A@B.co"}},
        {"email": " a@b.CO"},
        {"contact": {"email": "a@b.co"}},
        {"lead": {"email": "a@b.co"}},
        {"data": {"email": "a@b.co"}},
        {"Email": "a@b.co"},
        {"external_id": "  ", "user_info": {"email": "a@b.co"}},
    ],
)
def test_default_mapping_falls_back_to_the_email(
    default: Mapping, document: dict[str, Any]
) -> None:
    update = apply(default, document)
    assert (update.user_key, update.identity) == ("email:a@b.co", {"email": "a@b.co"})


def test_default_mapping_reads_flat_leads_and_formatted_scores(default: Mapping) -> None:
    update = apply(default, sample("flat_fields.json"))
    assert update.identity == {"email": "lee.park@example.com"}
    assert update.attributes == {
        "outgrow_quiz_score": 75,
        "outgrow_last_content": "Team plan finder",
        "outgrow_last_submitted_at": "2024-11-02T16:45:00.000Z",
    }


def test_default_mapping_leaves_out_what_a_calculator_lacks(default: Mapping) -> None:
    update = apply(default, sample("savings_calculator.json"))
    assert set(update.attributes) == {"outgrow_last_content", "outgrow_last_submitted_at"}
    assert set(update.events[0]["properties"]) == {
        "content_id",
        "content_name",
        "content_type",
        "lead_id",
        "source",
    }


def test_default_mapping_uses_the_receive_time_without_created_at(default: Mapping) -> None:
    update = apply(default, {"email": "a@b.co"})
    assert update.attributes == {"outgrow_last_submitted_at": RECEIVED_AT}
    assert update.events == (
        {"name": "outgrow_submission", "time": RECEIVED_AT, "properties": {"source": "default"}},
    )


def test_default_mapping_filters_outgrow_test_leads(default: Mapping) -> None:
    assert apply(default, sample("outgrow_test_lead.json")) == Filtered("outgrow_test_lead")
    assert apply(default, {"email": " John@OUTGROW.CO "}) == Filtered("outgrow_test_lead")
    assert isinstance(apply(default, {"email": "a@outgrow.com"}), BrazeUpdate)


def test_default_mapping_refuses_leads_without_identity(default: Mapping) -> None:
    error = failure(default, sample("no_identity.json"))
    assert (error.stage, error.reason) == (
        "map",
        "no identity: no rule found a usable value (external_id, email)",
    )


def test_default_mapping_refuses_unreadable_scores(default: Mapping) -> None:
    error = failure(default, sample("unreadable_score.json"))
    assert error.reason == (
        "attribute 'outgrow_quiz_score': the value at results[title=Score].value is not a number"
    )
    assert "kim@example.com" not in str(error)


def test_version_is_a_short_hash_of_the_file(default: Mapping, tmp_path: Path) -> None:
    shipped = (ROOT / "connector" / "default_mapping.yaml").read_bytes()
    assert default.version == hashlib.sha256(shipped).hexdigest()[:12]
    copy = tmp_path / "copy.yaml"
    copy.write_bytes(shipped)
    assert load_mapping(copy).version == default.version
    copy.write_bytes(shipped + b"\n# changed\n")
    assert load_mapping(copy).version != default.version
    assert MAPPING_VERSION_HEADER == "mapping-version"
    assert default.version in repr(default)


def test_shipped_mapping_is_package_data() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert re.search(r'^"connector" = \[.*"default_mapping\.yaml".*\]$', pyproject, re.MULTILINE)


# --- identity ----------------------------------------------------------------------------------


def test_identity_rules_first_match_wins(tmp_path: Path) -> None:
    mapping = mapping_of(
        """\
        version: 1
        identity:
          - external_id: [hidden.id, params.id]
          - email: {from: user_info.email, transform: [trim, lower]}
          - alias: {label: outgrow_lead, from: id}
        """,
        tmp_path,
    )
    full = {"hidden": {"id": 42}, "params": {"id": "p"}, "user_info": {"email": "A@B.co"}}
    assert apply(mapping, full).identity == {"external_id": "42"}
    assert apply(mapping, {**full, "hidden": {"id": [1]}}).identity == {"external_id": "p"}
    assert apply(mapping, {"user_info": {"email": " A@B.co "}}).identity == {"email": "a@b.co"}
    alias = apply(mapping, {"id": "L-1", "hidden": {"id": True}})
    assert alias.identity == {"user_alias": {"alias_name": "L-1", "alias_label": "outgrow_lead"}}
    assert alias.user_key == "alias:outgrow_lead:L-1"
    assert failure(mapping, {"hidden": {"id": {"x": 1}}}).reason == (
        "no identity: no rule found a usable value (external_id, email, alias 'outgrow_lead')"
    )


def test_alias_identity_asks_braze_to_create_the_user(tmp_path: Path) -> None:
    mapping = mapping_of(
        "version: 1\nidentity:\n  - alias: {label: l, from: id}\nevents:\n  - name: e\n",
        tmp_path,
    )
    update = apply(mapping, {"id": "x"})
    assert update.attribute_object() == {
        "user_alias": {"alias_name": "x", "alias_label": "l"},
        "_update_existing_only": False,
    }


@pytest.mark.parametrize(
    ("rule", "document", "user_key", "identity"),
    [
        ("phone: tel", {"tel": "+15550100"}, "phone:+15550100", {"phone": "+15550100"}),
        ("braze_id: b", {"b": "5f00"}, "braze_id:5f00", {"braze_id": "5f00"}),
        (
            "external_id: {from: e, transform: [lower, sha256]}",
            {"e": "A@b.co"},
            "external_id:" + hashlib.sha256(b"a@b.co").hexdigest(),
            {"external_id": hashlib.sha256(b"a@b.co").hexdigest()},
        ),
        (
            "external_id: {from: n, transform: [{prefix: crm-}, {suffix: -x}, upper]}",
            {"n": 17},
            "external_id:CRM-17-X",
            {"external_id": "CRM-17-X"},
        ),
    ],
)
def test_identity_kinds_and_transforms(
    tmp_path: Path, rule: str, document: dict[str, Any], user_key: str, identity: dict[str, Any]
) -> None:
    mapping = mapping_of(f"version: 1\nidentity:\n  - {rule}\n", tmp_path)
    update = apply(mapping, document)
    assert (update.user_key, update.identity) == (user_key, identity)
    assert update.attribute_object() is None
    assert update.event_objects() == []


def test_an_attribute_named_like_the_identity_is_left_out(tmp_path: Path) -> None:
    mapping = mapping_of(HEAD + "attributes:\n  email: other\n  first_name: name\n", tmp_path)
    update = apply(mapping, {"email": "a@b.co", "other": "c@d.e", "name": "A"})
    assert update.attribute_object() == {"email": "a@b.co", "first_name": "A"}


# --- attributes --------------------------------------------------------------------------------

ATTRIBUTES = """\
version: 1
identity:
  - external_id: id
attributes:
  score:
    from: results[title=Score].value
    type: number
  whole: {from: count, type: integer}
  agreed: {from: "questions[question=Agree?].answer", type: boolean}
  when: {from: [done_at, $received_at], type: time}
  tags: {from: tags, type: array, split: ","}
  answers: {from: "questions[*].answer", type: array}
  name: [user_info.fullName, name]
  note: {from: note, default: none given}
  lead: {value: true, type: boolean}
  launch: {value: 2024-05-01, type: time}
  plan: {value: gold}
  third: questions.2.answer
  source: $source
  profile: $profile
  code: {from: code, transform: [trim, upper]}
"""


def test_attributes_of_every_kind(tmp_path: Path) -> None:
    mapping = mapping_of(ATTRIBUTES, tmp_path)
    document = {
        "id": "u1",
        "results": [{"title": "Outcome", "value": "x"}, {"title": " SCORE", "value": "$1,234.50"}],
        "count": "12.0",
        "questions": [
            {"question": "Agree?", "answer": "Yes"},
            {"question": "Color?", "answer": "red"},
            {"question": "Size?", "answer": 3},
        ],
        "tags": "a, b,,a",
        "user_info": {"fullName": "  "},
        "name": "Jo",
        "code": " ab1 ",
    }
    assert apply(mapping, document, source="acme").attributes == {
        "score": 1234.5,
        "whole": 12,
        "agreed": True,
        "when": RECEIVED_AT,
        "tags": ["a", "b"],
        "answers": ["Yes", "red", "3"],
        "name": "Jo",
        "note": "none given",
        "lead": True,
        "launch": "2024-05-01T00:00:00.000Z",
        "plan": "gold",
        "third": "3",
        "source": "acme",
        "profile": "default",
        "code": "AB1",
    }


def test_absent_optional_attributes_are_not_sent(tmp_path: Path) -> None:
    mapping = mapping_of(ATTRIBUTES, tmp_path)
    assert apply(mapping, {"id": "u1", "questions": []}).attributes == {
        "when": RECEIVED_AT,
        "note": "none given",
        "lead": True,
        "launch": "2024-05-01T00:00:00.000Z",
        "plan": "gold",
        "source": "default",
        "profile": "default",
    }


def test_text_is_cut_to_255_characters(tmp_path: Path) -> None:
    mapping = mapping_of(
        HEAD + "attributes:\n  long: text\n  many: {from: list, type: array}\n", tmp_path
    )
    update = apply(mapping, {"email": "a@b.co", "text": "é" * 300, "list": ["x" * 256]})
    assert update.attributes == {"long": "é" * MAX_TEXT, "many": ["x" * MAX_TEXT]}


def test_a_required_attribute_that_is_missing_fails(tmp_path: Path) -> None:
    mapping = mapping_of(
        HEAD + "attributes:\n  score: {from: [a, b], required: true}\n"
        "  plan: {from: '\"Which plan?\"', required: true}\n",
        tmp_path,
    )
    assert failure(mapping, {"email": "a@b.co", "b": " "}).reason == (
        "attribute 'score' is required but none of a, b holds a value"
    )
    assert failure(mapping, {"email": "a@b.co", "a": 1}).reason == (
        "attribute 'plan' is required but \"Which plan?\" holds no value"
    )


@pytest.mark.parametrize(
    ("kind", "value", "reason"),
    [
        ("number", "N/A", "is not a number"),
        ("integer", 7.5, "is not a whole number"),
        ("boolean", "maybe", "is text, not a boolean"),
        ("time", "soon", "is not a time (ISO 8601 or epoch seconds or milliseconds)"),
        ("string", {"a": 1}, "is an object, not text"),
        ("array", [[1]], "holds lists or objects; array elements must be text"),
    ],
)
def test_values_that_cannot_be_coerced_fail_naming_attribute_and_path(
    tmp_path: Path, kind: str, value: Any, reason: str
) -> None:
    mapping = mapping_of(HEAD + f"attributes:\n  x: {{from: [a, b.c], type: {kind}}}\n", tmp_path)
    error = failure(mapping, {"email": "secret@example.com", "b": {"c": value}})
    assert error.stage == "map"
    assert error.reason == f"attribute 'x': the value at b.c {reason}"


# --- events ------------------------------------------------------------------------------------


def test_events_carry_name_time_and_present_properties(tmp_path: Path) -> None:
    mapping = mapping_of(
        """\
        version: 1
        identity:
          - external_id: id
        events:
          - name: outgrow_submission
            time: created_at
            properties:
              score: {from: score, type: number}
              missing: nowhere
              fixed: {value: 1, type: integer}
          - name: bare
        """,
        tmp_path,
    )
    update = apply(mapping, {"id": "u", "created_at": 1714558830, "score": "7"})
    assert update.attribute_object() is None
    assert update.event_objects() == [
        {
            "external_id": "u",
            "name": "outgrow_submission",
            "time": RECEIVED_AT,
            "properties": {"score": 7, "fixed": 1},
        },
        {"external_id": "u", "name": "bare", "time": RECEIVED_AT},
    ]
    assert failure(mapping, {"id": "u"}).reason == (
        "the time of event 'outgrow_submission' is required but created_at holds no value"
    )


DEDUPE = """\
version: 1
lead_id_from: [id, lead.id]
identity:
  - email: email
events:
  - name: by_lead
  - name: by_answer
    dedupe_key: [answers.order, order]
  - name: always
    dedupe_key: none
profiles:
  - name: partner
    when: {source: partner}
    events:
      - name: partner_only
      - name: by_lead
        dedupe_key: NONE
"""


@pytest.mark.parametrize(
    ("lead", "keys"),
    [
        ({"email": "a@b.co", "id": " L1 ", "order": 7}, ("L1", "7", None)),
        (
            {"email": "a@b.co", "lead": {"id": "L2"}, "answers": {"order": "O-1"}},
            ("L2", "O-1", None),
        ),
        ({"email": "a@b.co", "id": ["x"], "lead": {"id": 3.5}}, ("3.5", None, None)),
        ({"email": "a@b.co", "id": True, "order": "  "}, (None, None, None)),
        ({"email": "a@b.co"}, (None, None, None)),
    ],
)
def test_each_event_has_its_dedupe_key(
    tmp_path: Path, lead: dict[str, Any], keys: tuple[str | None, ...]
) -> None:
    update = apply(mapping_of(DEDUPE, tmp_path), lead)
    assert [event["name"] for event in update.events] == ["by_lead", "by_answer", "always"]
    assert update.event_keys == keys


def test_a_profile_event_defaults_to_the_lead_id_and_may_say_none(tmp_path: Path) -> None:
    update = apply(mapping_of(DEDUPE, tmp_path), {"email": "a@b.co", "id": "L1"}, "partner")
    names = [event["name"] for event in update.events]
    assert dict(zip(names, update.event_keys, strict=True)) == {
        "by_lead": None,
        "by_answer": None,
        "always": None,
        "partner_only": "L1",
    }


def test_without_lead_id_from_events_have_no_key(tmp_path: Path) -> None:
    mapping = mapping_of(HEAD + "events:\n  - name: e\n  - name: f\n", tmp_path)
    assert apply(mapping, {"email": "a@b.co", "id": "L1"}).event_keys == (None, None)
    assert mapping.lead_id({"id": "L1"}, "default") is None


def test_a_dedupe_key_named_none_is_a_path_in_a_list(tmp_path: Path) -> None:
    mapping = mapping_of(HEAD + "events:\n  - name: e\n    dedupe_key: [none]\n", tmp_path)
    assert apply(mapping, {"email": "a@b.co", "none": "K"}).event_keys == ("K",)


def test_dedupe_keys_leave_the_payloads_as_they_were(tmp_path: Path) -> None:
    with_keys = apply(mapping_of(DEDUPE, tmp_path), {"email": "a@b.co", "id": "L1"})
    without = apply(
        mapping_of(DEDUPE.replace("lead_id_from: [id, lead.id]\n", ""), tmp_path),
        {"email": "a@b.co", "id": "L1"},
    )
    assert with_keys.event_payloads == without.event_payloads
    assert with_keys.attribute_payload == without.attribute_payload
    assert (with_keys.event_keys, without.event_keys) == (("L1", None, None), (None, None, None))


def test_identity_key_and_lead_id_follow_the_profile_without_filters(tmp_path: Path) -> None:
    mapping = mapping_of(PROFILES, tmp_path)
    test_lead = {"email": "t@outgrow.co", "id": "L1"}
    assert apply(mapping, test_lead) == Filtered("test")
    assert mapping.identity_key(test_lead, "default") == "email:t@outgrow.co"
    assert mapping.identity_key(test_lead, "partner-us") == "alias:partner:L1"
    assert mapping.identity_key({"id": "L1"}, "default") is None
    assert mapping.lead_id(test_lead, "default") is None  # PROFILES has no lead_id_from
    assert load_mapping().lead_id({"_id": 42}, "default") == "42"


def test_an_event_without_any_time_fails(default: Mapping) -> None:
    with pytest.raises(MappingFailure) as caught:
        default.apply({"email": "a@b.co"}, source="default", received_at_ms=None)
    assert caught.value.reason == (
        "the time of event 'outgrow_submission' is required but none of created_at, "
        "$received_at holds a value"
    )


def test_rules_typing_one_source_alike_get_their_own_arrays(tmp_path: Path) -> None:
    mapping = mapping_of(
        HEAD + "attributes:\n  a: {from: tags, type: array}\n  b: {from: tags, type: array}\n",
        tmp_path,
    )
    update = apply(mapping, {"email": "a@b.co", "tags": ["x"]})
    assert update.attributes["a"] == update.attributes["b"] == ["x"]
    assert update.attributes["a"] is not update.attributes["b"]


SHARED = """\
version: 1
identity:
  - email: email
attributes:
  first: {from: score, type: number}
  second: {from: score, type: number, required: true}
  third: {from: score, type: number, default: 0}
events:
  - name: e
    time: {value: 2024-05-01T10:20:30Z}
    properties:
      again: {from: score, type: number}
"""


def test_a_value_several_rules_type_alike_fails_naming_the_first(tmp_path: Path) -> None:
    mapping = mapping_of(SHARED, tmp_path)
    update = apply(mapping, {"email": "a@b.co", "score": "75%"})
    assert update.attributes == {"first": 75, "second": 75, "third": 75}
    assert update.events[0]["properties"] == {"again": 75}
    unreadable = failure(mapping, {"email": "a@b.co", "score": "many"})
    assert unreadable.reason == "attribute 'first': the value at score is not a number"
    absent = failure(mapping, {"email": "a@b.co"})
    assert absent.reason == "attribute 'second' is required but score holds no value"


def test_a_bench_lead_maps_to_an_update(default: Mapping) -> None:
    result = default.apply(lead(7), source="default", received_at_ms=1)
    assert isinstance(result, BrazeUpdate)
    assert result.user_key == "email:bench.user.7@example.com"
    assert result.attributes["outgrow_quiz_score"] == 72
    assert result.events[0]["properties"]["segment"] == "Growth Stage"


def test_a_test_lead_is_filtered(default: Mapping) -> None:
    document = {**lead(1), "user_info": {"email": " Someone@Outgrow.co "}}
    assert apply(default, document) == Filtered("outgrow_test_lead")


def test_any_mapping_is_read_as_a_dict_is(default: Mapping) -> None:
    class Lead(dict[str, Any]):
        pass

    document = lead(3)
    assert apply(default, Lead(document)) == apply(default, document)


def test_a_failure_names_the_path_that_held_the_value() -> None:
    mapping = load_mapping(GOLDEN / "plan_everything.yaml")
    document = {"id": "u1", "code": "c", "results": [{"title": "Score", "value": "many"}]}
    assert failure(mapping, document).reason == (
        "attribute 'score': the value at results[title=Score].value is not a number"
    )


def test_names_and_keys_from_the_file_are_taken_as_written() -> None:
    mapping = load_mapping(GOLDEN / "plan_hostile.yaml")
    document = {"x') or __import__('os') #": {"k": "U1"}, "p'": {"q\\": "v"}, "q'": "go"}
    result = apply(mapping, document)
    assert isinstance(result, BrazeUpdate)
    assert result.user_key == "alias:l'a\"b\\c\nd:U1"
    assert result.attributes == {
        "a'b\"c\\d\ne": "v",
        "{0}": "'; raise SystemExit #",
        "_update_existing_only": False,
    }
    assert result.events[0]["name"] == "e')\n"
    assert result.events[0]["properties"] == {"p'": "v"}
    assert apply(mapping, {**document, "q'": " STOP "}) == Filtered("f'\n\"g")


# --- filters -----------------------------------------------------------------------------------


FILTERS = """\
version: 1
identity:
  - email: email
filters:
  - name: test_domain
    drop_if: {from: email, ends_with: ["@outgrow.co", "@example.test"]}
  - name: staff
    drop_if: {from: email, starts_with: staff.}
  - name: demo_content
    drop_if: {from: calc_name, contains: demo}
  - name: sandbox_source
    drop_if: {from: $source, equals: [sandbox, qa]}
  - name: numbered
    drop_if: {from: code, matches: '^T-\\d+$'}
  - name: bot_and_no_answers
    drop_if:
      - {from: device.bot, equals: true}
      - {from: questions, exists: false}
  - name: tagged
    drop_if: {from: tags, equals: spam}
  - name: zero
    drop_if: {from: score, equals: 0}
"""


@pytest.mark.parametrize(
    ("document", "source", "rule"),
    [
        ({"email": "a@OUTGROW.co "}, "default", "test_domain"),
        ({"email": "a@example.test"}, "default", "test_domain"),
        ({"email": "Staff.Jo@acme.com"}, "default", "staff"),
        ({"email": "a@b.co", "calc_name": "Quiz DEMO v2"}, "default", "demo_content"),
        ({"email": "a@b.co"}, "QA", "sandbox_source"),
        ({"email": "a@b.co"}, "prod", None),
        ({"email": "a@b.co"}, "qa", "sandbox_source"),
        ({"email": "a@b.co", "code": " t-12 "}, "default", "numbered"),
        ({"email": "a@b.co", "code": "T-12a"}, "default", None),
        ({"email": "a@b.co", "device": {"bot": True}}, "default", "bot_and_no_answers"),
        ({"email": "a@b.co", "device": {"bot": True}, "questions": [1]}, "default", None),
        ({"email": "a@b.co", "tags": ["ok", "SPAM"]}, "default", "tagged"),
        ({"email": "a@b.co", "score": 0}, "default", "zero"),
        ({"email": "a@b.co", "score": "0"}, "default", "zero"),
        ({"email": "a@b.co", "score": 10}, "default", None),
        ({"email": "x@y.z.outgrow.co.uk"}, "default", None),
    ],
)
def test_filters(tmp_path: Path, document: dict[str, Any], source: str, rule: str | None) -> None:
    result = apply(mapping_of(FILTERS, tmp_path), document, source)
    if rule is None:
        assert isinstance(result, BrazeUpdate)
    else:
        assert result == Filtered(rule)


def test_filters_run_before_identity(tmp_path: Path) -> None:
    mapping = mapping_of(
        HEAD + "filters:\n  - name: anonymous\n    drop_if: {from: email, exists: false}\n",
        tmp_path,
    )
    assert apply(mapping, {}) == Filtered("anonymous")


def test_filter_exists_true(tmp_path: Path) -> None:
    mapping = mapping_of(
        HEAD + "filters:\n  - name: flagged\n    drop_if: {from: test, exists: true}\n", tmp_path
    )
    assert apply(mapping, {"email": "a@b.co", "test": False}) == Filtered("flagged")
    assert isinstance(apply(mapping, {"email": "a@b.co", "test": ""}), BrazeUpdate)


# --- profiles ----------------------------------------------------------------------------------

PROFILES = """\
version: 1
content_id_from: [content.id, calc_id]
identity:
  - email: email
filters:
  - name: test
    drop_if: {from: email, ends_with: "@outgrow.co"}
attributes:
  common: {value: base}
  shared: {value: base}
events:
  - name: submitted
profiles:
  - name: savings
    when: {content_id: [5F7B, 6a00]}
    attributes:
      shared: {value: savings}
      savings: {from: "results[title=Projected savings].value", type: number}
  - name: partner
    when: {source: [partner-eu, partner-us]}
    identity:
      - alias: {label: partner, from: id}
    events:
      - name: partner_submitted
  - name: partner-savings
    when: {source: partner-eu, content_id: 5f7b}
  - name: bare
    when: {source: bare}
    inherit: false
    identity:
      - external_id: id
"""


@pytest.mark.parametrize(
    ("document", "source", "profile"),
    [
        ({"calc_id": "5f7b"}, "default", "savings"),
        ({"calc_id": " 6A00 "}, "default", "savings"),
        ({"content": {"id": "6a00"}, "calc_id": "zzz"}, "default", "savings"),
        ({"calc_id": "5f7b"}, "partner-eu", "savings"),
        ({"calc_id": "1111"}, "partner-us", "partner"),
        ({}, "partner-eu", "partner"),
        ({"calc_id": "1111"}, "bare", "bare"),
        ({"calc_id": "1111"}, "other", "default"),
        ({"calc_id": 5}, "default", "default"),
    ],
)
def test_profiles_are_chosen_by_source_or_content_id(
    tmp_path: Path, document: dict[str, Any], source: str, profile: str
) -> None:
    assert mapping_of(PROFILES, tmp_path).profile_for(document, source).name == profile


def test_a_profile_inherits_and_overrides_by_name(tmp_path: Path) -> None:
    mapping = mapping_of(PROFILES, tmp_path)
    lead = {
        "email": "a@b.co",
        "calc_id": "5f7b",
        "results": [{"title": "Projected savings", "value": "$168,400"}],
    }
    update = apply(mapping, lead)
    assert update.attributes == {"common": "base", "shared": "savings", "savings": 168400}
    assert [event["name"] for event in update.events] == ["submitted"]
    assert apply(mapping, {**lead, "email": "t@outgrow.co"}) == Filtered("test")


def test_a_profile_identity_replaces_the_inherited_one(tmp_path: Path) -> None:
    mapping = mapping_of(PROFILES, tmp_path)
    update = apply(mapping, {"email": "a@b.co", "id": "L1"}, source="partner-us")
    assert update.user_key == "alias:partner:L1"
    assert [event["name"] for event in update.events] == ["submitted", "partner_submitted"]


def test_a_profile_without_inheritance_starts_from_nothing(tmp_path: Path) -> None:
    mapping = mapping_of(PROFILES, tmp_path)
    update = apply(mapping, {"email": "t@outgrow.co", "id": "L1"}, source="bare")
    assert update == BrazeUpdate("external_id:L1", {"external_id": "L1"}, {}, ())


def test_content_id_is_read_from_calc_id_by_default(tmp_path: Path) -> None:
    mapping = mapping_of(
        HEAD + "profiles:\n  - name: p\n    when: {content_id: 123}\n"
        "    attributes:\n      x: {value: p}\n",
        tmp_path,
    )
    assert apply(mapping, {"email": "a@b.co", "calc_id": 123}).attributes == {"x": "p"}
    assert apply(mapping, {"email": "a@b.co", "calc_id": "124"}).attributes == {}


# --- raw records -------------------------------------------------------------------------------


def test_map_record_parses_json_with_parameters(default: Mapping) -> None:
    body = (SAMPLES / "graded_quiz.json").read_bytes()
    result = map_record(
        default,
        body,
        "Application/JSON; charset=utf-8",
        source="default",
        received_at_ms=RECEIVED_AT_MS,
    )
    assert result == apply(default, sample("graded_quiz.json"))


def test_map_record_parses_forms(default: Mapping) -> None:
    body = b"user_info%5Bemail%5D=A%40b.co&score=75%25&calc_name=Quiz"
    result = map_record(
        default,
        body,
        "application/x-www-form-urlencoded",
        source="default",
        received_at_ms=RECEIVED_AT_MS,
    )
    assert isinstance(result, BrazeUpdate)
    assert result.identity == {"email": "a@b.co"}
    assert result.attributes["outgrow_quiz_score"] == 75


@pytest.mark.parametrize(
    ("body", "content_type", "reason"),
    [
        (b"", "application/json", "the body is empty"),
        (b'{"email": "a@b.co"', "application/json", "the body is not valid JSON"),
        (b'["a@b.co"]', "application/json", "the body is JSON but not an object"),
        (
            b"email=a%40b.co&x",
            "application/x-www-form-urlencoded",
            "the body is not a readable form",
        ),
        (b'{"email": "a@b.co"}', "text/plain", "the content type is neither JSON nor a form"),
        (b'{"email": "a@b.co"}', "", "the content type is neither JSON nor a form"),
    ],
)
def test_unreadable_records_fail_at_the_parse_stage(
    default: Mapping, body: bytes, content_type: str, reason: str
) -> None:
    with pytest.raises(MappingFailure) as caught:
        map_record(default, body, content_type, source="default", received_at_ms=None)
    assert (caught.value.stage, caught.value.reason) == ("parse", reason)
    assert "a@b.co" not in caught.value.reason


def test_mapping_failure_shows_stage_and_reason() -> None:
    error = MappingFailure("map", "no identity")
    assert str(error) == "no identity"
    assert repr(error) == "MappingFailure(stage='map', reason='no identity')"


# --- properties --------------------------------------------------------------------------------

KITCHEN_SINK = ATTRIBUTES.replace(
    "identity:\n  - external_id: id\n",
    "identity:\n  - external_id: id\n  - email: {from: [user_info.email, email], "
    "transform: [trim, lower]}\n  - alias: {label: lead, from: [lead, phone]}\n",
) + textwrap.dedent(
    """\
    filters:
      - name: test
        drop_if: {from: [user_info.email, email], ends_with: "@outgrow.co"}
    events:
      - name: e
        time: [created_at, $received_at]
        properties:
          score: {from: "results[title=Score].value", type: number}
          all: {from: "questions[*].answer", type: array}
          text: note
    """
)

KEYS = [
    "id",
    "email",
    "user_info",
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
    "fullName",
    "code",
    "created_at",
    "done_at",
    "lead",
    "phone",
]
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=300)
    | st.sampled_from(["Score", "Agree?", "$1,234.50", "75%", "2024-05-01", "a@outgrow.co", "yes"])
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS), children, max_size=5)
    ),
    max_leaves=30,
)
documents = st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=5), json_values, max_size=8)


def _all_texts(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [text for item in value.values() for text in _all_texts(item)]
    if isinstance(value, list):
        return [text for item in value for text in _all_texts(item)]
    return []


@pytest.fixture(scope="module")
def kitchen_sink(tmp_path_factory: pytest.TempPathFactory) -> Mapping:
    return mapping_of(KITCHEN_SINK, tmp_path_factory.mktemp("sink"))


@settings(max_examples=300)
@given(document=documents, received_at=st.none() | st.integers(0, 2**41))
def test_any_json_object_maps_is_filtered_or_fails_cleanly(
    kitchen_sink: Mapping, default: Mapping, document: dict[str, Any], received_at: int | None
) -> None:
    for mapping in (kitchen_sink, default):
        try:
            result = mapping.apply(document, source="default", received_at_ms=received_at)
        except MappingFailure as exc:
            assert exc.stage == "map"
            assert exc.reason
            continue
        if isinstance(result, Filtered):
            assert result.rule == "test" or result.rule == "outgrow_test_lead"
            continue
        assert len(result.identity) == 1
        assert result.user_key
        for event in result.event_objects():
            assert event["name"] and event["time"]
        objects = [result.attribute_object() or {}, *result.event_objects()]
        assert all(len(text) <= MAX_TEXT for text in _all_texts(objects[1:]))
        assert all(
            len(text) <= MAX_TEXT
            for name, value in objects[0].items()
            if name not in result.identity
            for text in _all_texts(value)
        )
        json.dumps(objects, allow_nan=False)


@given(
    document=documents, email=st.emails(), phone=st.from_regex(r"\+1 555 0[0-9]{3}", fullmatch=True)
)
def test_failure_reasons_never_quote_emails_or_phones(
    kitchen_sink: Mapping, document: dict[str, Any], email: str, phone: str
) -> None:
    document = {
        **document,
        "user_info": {"email": f"{email}x", "phone": phone},
        "count": email,
        "results": [{"title": "Score", "value": phone}],
    }
    try:
        kitchen_sink.apply(document, source="default", received_at_ms=None)
    except MappingFailure as exc:
        assert email not in exc.reason and phone not in exc.reason


@given(
    st.binary(max_size=200),
    st.sampled_from(["application/json", "application/x-www-form-urlencoded", "text/plain"]),
)
def test_any_bytes_map_or_fail_cleanly(default: Mapping, body: bytes, content_type: str) -> None:
    try:
        map_record(default, body, content_type, source="default", received_at_ms=RECEIVED_AT_MS)
    except MappingFailure as exc:
        assert exc.stage in ("parse", "map")


# --- the command line --------------------------------------------------------------------------


def run_check(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(["mapping", "check", "--received-at", str(RECEIVED_AT_MS), *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_check_prints_the_braze_objects(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_check(capsys, "--sample", str(SAMPLES / "graded_quiz.json"))
    assert code == 0
    body = json.loads(out)
    assert body["attributes"] == [
        {
            "email": "jane.doe@example.com",
            "outgrow_quiz_score": 72,
            "outgrow_custom_segment": "Growth Stage",
            "outgrow_last_content": "What's your marketing maturity?",
            "outgrow_last_submitted_at": "2024-05-01T10:20:30.000Z",
        }
    ]
    assert [event["name"] for event in body["events"]] == ["outgrow_submission"]
    assert body["event_keys"] == {"outgrow_submission": "65f1c2a9e4b0a1b2c3d4e5f6"}


def test_check_takes_a_mapping_source_and_form_bodies(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    mapping = tmp_path / "m.yaml"
    mapping.write_text(PROFILES, encoding="utf-8")
    lead = tmp_path / "lead.txt"
    lead.write_bytes(b"email=a%40b.co&id=L1")
    code, out, _ = run_check(
        capsys,
        "--mapping",
        str(mapping),
        "--sample",
        str(lead),
        "--source",
        "partner-eu",
        "--content-type",
        "application/x-www-form-urlencoded",
    )
    assert code == 0
    assert json.loads(out) == {
        "attributes": [
            {
                "user_alias": {"alias_name": "L1", "alias_label": "partner"},
                "common": "base",
                "shared": "base",
                "_update_existing_only": False,
            }
        ],
        "events": [
            {
                "user_alias": {"alias_name": "L1", "alias_label": "partner"},
                "name": name,
                "time": RECEIVED_AT,
            }
            for name in ("submitted", "partner_submitted")
        ],
        "event_keys": {"submitted": None, "partner_submitted": None},
    }


def test_check_reports_filtered_samples(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_check(capsys, "--sample", str(SAMPLES / "outgrow_test_lead.json"))
    assert (code, json.loads(out)) == (0, {"filtered_by": "outgrow_test_lead"})


def test_check_reports_why_a_sample_cannot_be_mapped(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_check(capsys, "--sample", str(SAMPLES / "unreadable_score.json"))
    assert (code, out) == (1, "")
    assert err == (
        "outgrow-braze: cannot map the sample (map): attribute 'outgrow_quiz_score': "
        "the value at results[title=Score].value is not a number\n"
    )


def test_check_exits_2_on_a_broken_mapping_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    mapping = tmp_path / "broken.yaml"
    mapping.write_text(HEAD + "attributes:\n  score:\n    from: s\n    type: numbr\n")
    code, out, err = run_check(
        capsys, "--mapping", str(mapping), "--sample", str(SAMPLES / "graded_quiz.json")
    )
    assert (code, out) == (2, "")
    assert err == (
        f"outgrow-braze: {mapping}:7: attributes.score.type: unknown type 'numbr'; "
        "use one of: string, number, integer, boolean, time, array\n"
    )


def test_check_exits_2_on_a_missing_sample(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_check(capsys, "--sample", "/nonexistent/lead.json")
    assert code == 2
    assert err == (
        "outgrow-braze: cannot read the sample /nonexistent/lead.json: No such file or directory\n"
    )


# --- the documentation -------------------------------------------------------------------------

DOCS = (ROOT / "docs" / "mapping.md").read_text(encoding="utf-8")
SECTIONS = (
    "version",
    "identity",
    "filters",
    "attributes",
    "events",
    "profiles",
    "content_id_from",
    "lead_id_from",
)


def _yaml_blocks() -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", DOCS, re.DOTALL)


def _as_mapping_file(block: str) -> str:
    """Complete a documentation snippet into a whole mapping file."""
    if not block.startswith(SECTIONS):
        block = "attributes:\n" + textwrap.indent(block, "  ")
    head = "" if block.startswith("version") else "version: 1\n"
    if "\nidentity:" not in "\n" + block:
        head += "identity:\n  - email: email\n"
    return head + block


@pytest.mark.parametrize("block", _yaml_blocks())
def test_every_documented_example_is_a_valid_mapping(block: str, tmp_path: Path) -> None:
    mapping_of(_as_mapping_file(block), tmp_path)


def test_the_first_documented_example_gives_the_documented_output(tmp_path: Path) -> None:
    mapping = mapping_of(_yaml_blocks()[0], tmp_path)
    lead, output = re.findall(r"```json\n(.*?)```", DOCS, re.DOTALL)[:2]
    result = apply(mapping, json.loads(lead))
    assert isinstance(result, BrazeUpdate)
    assert {"attributes": [result.attribute_object()], "events": result.event_objects()} == (
        json.loads(output)
    )


def test_the_documented_failure_reasons_are_real(default: Mapping) -> None:
    assert failure(default, sample("no_identity.json")).reason in DOCS
    assert failure(default, sample("unreadable_score.json")).reason in DOCS
