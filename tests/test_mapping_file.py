"""Mapping files: every refusal names the file, the line and the rule."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]

from connector import mapping_file
from connector.errors import ConfigError
from connector.mapping import MappingFileError, load_mapping
from connector.mapping_file import SCHEMA_PATH, compile_mapping
from connector.mapping_yaml import describe, read_yaml

DEFAULT_MAPPING = Path(__file__).resolve().parent.parent / "connector" / "default_mapping.yaml"
HEAD = "version: 1\nidentity:\n  - email: email\n"


def refusal(text: str) -> MappingFileError:
    with pytest.raises(MappingFileError) as caught:
        compile_mapping(textwrap.dedent(text), "m.yaml")
    return caught.value


# --- the schema file ---------------------------------------------------------------------------


def test_schema_is_a_valid_draft_2020_12_schema() -> None:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)


def test_shipped_mapping_matches_the_schema() -> None:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    data = yaml.safe_load(DEFAULT_MAPPING.read_text(encoding="utf-8"))
    assert list(Draft202012Validator(schema).iter_errors(data)) == []


def test_mapping_file_error_is_a_config_error_with_its_parts() -> None:
    error = refusal(HEAD + "attributes:\n  score:\n    from: score\n    type: numbr\n")
    assert isinstance(error, ConfigError)
    assert (error.file, error.line, error.rule) == ("m.yaml", 7, "attributes.score.type")
    assert str(error) == (
        "m.yaml:7: attributes.score.type: unknown type 'numbr'; "
        "use one of: string, number, integer, boolean, time, array"
    )


def test_a_missing_schema_file_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mapping_file, "SCHEMA_PATH", Path("/nonexistent/mapping.schema.json"))
    mapping_file.schema_validator.cache_clear()
    try:
        with pytest.raises(ConfigError) as caught:
            compile_mapping(HEAD, "m.yaml")
    finally:
        mapping_file.schema_validator.cache_clear()
    assert str(caught.value) == (
        "cannot read the mapping schema /nonexistent/mapping.schema.json: No such file or directory"
    )
    assert not isinstance(caught.value, MappingFileError)


# --- schema rules ------------------------------------------------------------------------------

SCHEMA_CASES = [
    ("identity:\n  - email: email\n", 1, "top level", "'version' is missing"),
    ("version: 2\nidentity:\n  - email: email\n", 1, "version", "must be 1"),
    ("version: 1\n", 1, "top level", "'identity' is missing"),
    ("version: 1\nidentity: []\n", 2, "identity", "must not be empty"),
    ("- a\n", 1, "top level", "must be a mapping"),
    (
        "version: 1\nidentity:\n  - email: email\nextra: 1\n",
        4,
        "extra",
        "unknown key 'extra'; allowed here: version, content_id_from, lead_id_from, identity, "
        "filters, attributes, events, profiles",
    ),
    (
        HEAD + "events:\n  - name: e\n    dedupe_key: null\n",
        6,
        "events[0].dedupe_key",
        "must be text or a list; write none for an event sent every time",
    ),
    (
        HEAD + "events:\n  - name: e\n    dedupe_key: []\n",
        6,
        "events[0].dedupe_key",
        "must not be empty",
    ),
    (
        HEAD + "profiles:\n  - name: p\n    when: {source: a}\n    lead_id_from: id\n",
        7,
        "profiles[0].lead_id_from",
        "unknown key 'lead_id_from'; allowed here: name, when, inherit, identity, filters, "
        "attributes, events",
    ),
    (
        HEAD + "attributes:\n  score:\n    form: score\n",
        6,
        "attributes.score.form",
        "unknown key 'form'; allowed here: from, value, type, default, required, transform, split",
    ),
    (
        HEAD + "attributes:\n  a: 3\n",
        5,
        "attributes.a",
        "must be text, a list or a mapping; write a constant as {value: ...}",
    ),
    (
        "version: 1\nidentity:\n  - email: email\n    external_id: x\n",
        3,
        "identity[0]",
        "give exactly one key, one of: external_id, braze_id, email, phone, alias",
    ),
    ("version: 1\nidentity:\n  - {}\n", 3, "identity[0]", "must not be empty"),
    (
        "version: 1\nidentity:\n  - alias: {from: email}\n",
        3,
        "identity[0].alias",
        "'label' is missing",
    ),
    (
        "version: 1\nidentity:\n  - email: {from: email, transform: [trim, lowr]}\n",
        3,
        "identity[0].email.transform[1]",
        "unknown value 'lowr'; use one of: trim, lower, upper, sha256",
    ),
    (
        "version: 1\nidentity:\n  - email: {from: email, transform: [{prefx: a}]}\n",
        3,
        "identity[0].email.transform[0].prefx",
        "unknown key 'prefx'; allowed here: prefix, suffix",
    ),
    (
        HEAD + "profiles:\n  - name: p\n    when: {source: a}\n    inherit: false\n",
        5,
        "profiles[0]",
        "'identity' is missing",
    ),
    (HEAD + "profiles:\n  - name: p\n    when: {}\n", 6, "profiles[0].when", "must not be empty"),
    (HEAD + "profiles:\n  - name: p\n", 5, "profiles[0]", "'when' is missing"),
    (
        HEAD + "profiles:\n  - name: p\n    when: {source: a}\n    inherit: no\n",
        7,
        "profiles[0].inherit",
        "must be true or false",
    ),
    (
        HEAD + "filters:\n  - name: t\n    drop_if: []\n",
        6,
        "filters[0].drop_if",
        "must not be empty",
    ),
    (
        HEAD + "filters:\n  - name: t\n    drop_if: x\n",
        6,
        "filters[0].drop_if",
        "must be a mapping or a list",
    ),
    (
        HEAD + "filters:\n  - drop_if: {from: x, exists: true}\n",
        5,
        "filters[0]",
        "'name' is missing",
    ),
    (HEAD + "events:\n  - time: created_at\n", 5, "events[0]", "'name' is missing"),
    (
        HEAD + "attributes:\n  a:\n    from: x\n    required: yes\n",
        7,
        "attributes.a.required",
        "must be true or false",
    ),
]


@pytest.mark.parametrize(("text", "line", "rule", "problem"), SCHEMA_CASES)
def test_schema_refusals_name_line_and_rule(text: str, line: int, rule: str, problem: str) -> None:
    error = refusal(text)
    assert (error.line, error.rule, error.problem) == (line, rule, problem)


# --- semantic rules ----------------------------------------------------------------------------

SEMANTIC_CASES = [
    (
        HEAD + "attributes:\n  score: results[title=Score.value\n",
        5,
        "attributes.score",
        "bad path 'results[title=Score.value': a selector must end with ']' (at character 15)",
    ),
    (
        HEAD + "attributes:\n  score:\n    from:\n      - ok\n      - a..b\n",
        8,
        "attributes.score.from[1]",
        "bad path 'a..b': a key is missing (at character 3)",
    ),
    (
        "version: 1\ncontent_id_from: $calc\nidentity:\n  - email: email\n",
        2,
        "content_id_from",
        "bad path '$calc': unknown record field '$calc'; known: $source, $received_at, $profile",
    ),
    (
        "version: 1\nlead_id_from: [id, $received_at]\nidentity:\n  - email: email\n",
        2,
        "lead_id_from[1]",
        "'$received_at' is a fact of the record, not a place in the lead",
    ),
    (
        "version: 1\nlead_id_from: lead..id\nidentity:\n  - email: email\n",
        2,
        "lead_id_from",
        "bad path 'lead..id': a key is missing (at character 6)",
    ),
    (
        HEAD + "events:\n  - name: e\n    dedupe_key: [id, 'a[x']\n",
        6,
        "events[0].dedupe_key[1]",
        "bad path 'a[x': a selector is [N], [*] or [field=value] (at character 4)",
    ),
    (
        "version: 1\nidentity:\n  - email: user_info[email\n",
        3,
        "identity[0].email",
        "bad path 'user_info[email': a selector is [N], [*] or [field=value] (at character 16)",
    ),
    (
        HEAD + "attributes:\n  $score: score\n",
        5,
        "attributes.$score",
        "an attribute name must not start with '$' (Braze keeps it for operators)",
    ),
    (
        HEAD + "attributes:\n  " + "a" * 256 + ": score\n",
        5,
        "attributes." + "a" * 39 + "…",
        "the attribute name has 256 characters; Braze allows 255",
    ),
    (
        HEAD + "attributes:\n  ' ': score\n",
        5,
        "attributes. ",
        "an attribute name must not be blank",
    ),
    (
        HEAD + "attributes:\n  external_id: x\n",
        5,
        "attributes.external_id",
        "'external_id' is a Braze identifier or flag; set identities under identity",
    ),
    (
        HEAD + "attributes:\n  score: a\n  x: b\n  score: c\n",
        7,
        "attributes",
        "the key 'score' appears twice (first on line 5)",
    ),
    (
        HEAD + "attributes:\n  n:\n    from: x\n    type: number\n    default: lots\n",
        8,
        "attributes.n.default",
        "this value is not a number",
    ),
    (
        HEAD + "attributes:\n  n:\n    value: 2024-13-45\n    type: time\n",
        6,
        "attributes.n.value",
        "this value is not a time (ISO 8601 or epoch seconds or milliseconds)",
    ),
    (
        HEAD + "attributes:\n  n:\n    from: x\n    value: 3\n",
        5,
        "attributes.n",
        "give either 'from' (paths in the lead) or 'value' (a constant)",
    ),
    (
        HEAD + "attributes:\n  n:\n    type: number\n",
        5,
        "attributes.n",
        "give either 'from' (paths in the lead) or 'value' (a constant)",
    ),
    (
        HEAD + "attributes:\n  a: {from: x, split: ','}\n",
        5,
        "attributes.a.split",
        "'split' applies only to type array",
    ),
    (
        HEAD + "attributes:\n  a: {from: x, required: true, default: y}\n",
        5,
        "attributes.a.required",
        "a value with a default or a constant is never missing",
    ),
    (
        HEAD + "filters:\n  - name: t\n    drop_if:\n      from: x\n"
        "      equals: a\n      ends_with: b\n",
        6,
        "filters[0].drop_if",
        "give exactly one test, one of: equals, starts_with, ends_with, contains, matches, exists",
    ),
    (
        HEAD + "filters:\n  - name: t\n    drop_if:\n      - from: x\n        exists: true\n"
        "      - from: y\n",
        9,
        "filters[0].drop_if[1]",
        "give exactly one test, one of: equals, starts_with, ends_with, contains, matches, exists",
    ),
    (
        HEAD + "filters:\n  - name: t\n    drop_if: {from: x, matches: '(('}\n",
        6,
        "filters[0].drop_if.matches",
        "not a valid regular expression: missing ), unterminated subpattern at position 1",
    ),
    (
        HEAD + "filters:\n  - name: t\n    drop_if: {from: x, exists: true}\n"
        "  - name: t\n    drop_if: {from: y, exists: true}\n",
        7,
        "filters[1].name",
        "the name 't' is used twice",
    ),
    (
        HEAD + "events:\n  - name: e\n    properties:\n      time: created_at\n",
        7,
        "events[0].properties.time",
        "'time' is reserved by Braze in event properties",
    ),
    (
        HEAD + "events:\n  - name: e\n    properties:\n      $p: created_at\n",
        7,
        "events[0].properties.$p",
        "an event property name must not start with '$' (Braze keeps it for operators)",
    ),
    (
        HEAD + "events:\n  - name: " + "e" * 256 + "\n",
        5,
        "events[0].name",
        "the event name has 256 characters; Braze allows 255",
    ),
    (
        HEAD + "events:\n  - name: e\n    time: {from: x, type: string}\n",
        6,
        "events[0].time.type",
        "an event's time has type time",
    ),
    (
        HEAD + "events:\n  - name: e\n  - name: e\n",
        6,
        "events[1].name",
        "the name 'e' is used twice",
    ),
    (
        HEAD
        + "profiles:\n  - name: p\n    when: {source: a}\n  - name: p\n    when: {source: b}\n",
        7,
        "profiles[1].name",
        "the name 'p' is used twice",
    ),
    (
        HEAD + "profiles:\n  - name: default\n    when: {source: a}\n",
        5,
        "profiles[0].name",
        "'default' names the top-level rules",
    ),
    (
        "version: 1\nidentity:\n  - alias: {label: " + "é" * 119 + ", from: id}\n",
        3,
        "identity[0].alias.label",
        "an alias label may have 236 bytes",
    ),
]


@pytest.mark.parametrize(("text", "line", "rule", "problem"), SEMANTIC_CASES)
def test_semantic_refusals_name_line_and_rule(
    text: str, line: int, rule: str, problem: str
) -> None:
    error = refusal(text)
    assert (error.line, error.rule, error.problem) == (line, rule, problem)


def test_errors_inside_profiles_name_the_profile_position() -> None:
    error = refusal(
        HEAD + "profiles:\n  - name: p\n    when: {source: a}\n    attributes:\n      $x: y\n"
    )
    assert (error.line, error.rule) == (8, "profiles[0].attributes.$x")


# --- YAML --------------------------------------------------------------------------------------

YAML_CASES = [
    ("", 1, "", "the file is empty"),
    ("# only a comment\n", 1, "", "the file is empty"),
    ("version: 1\nidentity: [\n", 3, "YAML", "expected the node content, but found '<stream end>'"),
    ("version: 1\n\tidentity: x\n", 2, "YAML", "found character '\\t' that cannot start any token"),
    ("a: 1\n---\nb: 2\n", 2, "YAML", "but found another document"),
    ("a: !foo 1\n", 1, "YAML", "could not determine a constructor for the tag '!foo'"),
    ("a: 1\nb: \x07\n", 2, "YAML", "the character '\\x07' is not allowed in YAML"),
    ("a: &x [*x]\n", None, "YAML", "nested too deeply, or an anchor contains itself"),
    ("? [a]\n: 1\n", 1, "top level", "keys must be plain text"),
]


@pytest.mark.parametrize(("text", "line", "rule", "problem"), YAML_CASES)
def test_yaml_refusals(text: str, line: int | None, rule: str, problem: str) -> None:
    error = refusal(text)
    assert (error.line, error.rule, error.problem) == (line, rule, problem)


def test_yaml_keeps_dates_and_yes_no_as_text() -> None:
    data, _ = read_yaml("a: 2024-01-01\nb: yes\nc: .nan\nd: !!binary aGk=\ne: ~\nf: 1_000\n", "f")
    assert data == {"a": "2024-01-01", "b": "yes", "c": ".nan", "d": "aGk=", "e": None, "f": 1000}


def test_yaml_remembers_lines_of_keys_and_items() -> None:
    _, lines = read_yaml("a:\n  - x\n  -\n    b: 1\n", "f")
    assert lines[("a",)] == 1
    assert lines[("a", 0)] == 2
    assert lines[("a", 1)] == 4
    assert lines[("a", 1, "b")] == 4


def test_merge_keys_are_not_duplicates_and_own_keys_win() -> None:
    data, _ = read_yaml("b: &b {type: number, from: x}\nc:\n  <<: *b\n  type: string\n", "f")
    assert data["c"] == {"type": "string", "from": "x"}


def test_describe_locations() -> None:
    assert describe(()) == "top level"
    assert describe(("profiles", 0, "attributes", "x")) == "profiles[0].attributes.x"


# --- files -------------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(MappingFileError) as caught:
        load_mapping(tmp_path / "nope.yaml")
    assert str(caught.value) == (
        f"{tmp_path / 'nope.yaml'}: cannot read the file: No such file or directory"
    )
    assert caught.value.line is None


def test_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("version: 1 # caf\xe9\n".encode("latin-1"))
    with pytest.raises(MappingFileError, match="the file is not UTF-8 text"):
        load_mapping(path)


def test_error_names_the_file_it_was_given(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(HEAD + "attributes:\n  $a: b\n", encoding="utf-8")
    with pytest.raises(MappingFileError) as caught:
        load_mapping(str(path))
    assert str(caught.value).startswith(f"{path}:5: attributes.$a: ")


texts = st.text(alphabet=st.sampled_from(list("ab:-[]{}$&*!|>'\"#., \n\t0123456789")), max_size=80)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(texts, texts.map(lambda tail: HEAD + tail)))
def test_any_text_either_loads_or_raises_a_mapping_file_error(text: str) -> None:
    try:
        compile_mapping(text, "m.yaml")
    except MappingFileError as exc:
        assert str(exc).startswith("m.yaml")


def _field_specs() -> st.SearchStrategy[Any]:
    scalars = st.one_of(st.text(max_size=8), st.integers(), st.booleans(), st.floats())
    keys = st.sampled_from(["from", "value", "type", "default", "required", "transform", "split"])
    values = st.one_of(
        scalars,
        st.sampled_from(["string", "number", "integer", "boolean", "time", "array", "a[x=1]"]),
        st.lists(st.sampled_from(["trim", "sha256", "a.b", "bad[", "$source"]), max_size=3),
    )
    return st.one_of(scalars, st.dictionaries(keys, values, max_size=4))


@given(st.dictionaries(st.text(max_size=6), _field_specs(), max_size=4))
def test_any_attributes_section_either_compiles_or_raises_a_mapping_file_error(
    attributes: dict[str, Any],
) -> None:
    text = HEAD + yaml.safe_dump({"attributes": attributes}, allow_unicode=True)
    try:
        compile_mapping(text, "m.yaml")
    except MappingFileError as exc:
        assert exc.line is not None
