"""The path language: keys, positions, selectors, wildcards, quoting and record fields."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector.mapping_paths import (
    MISSING,
    Each,
    Index,
    Key,
    Path,
    PathSyntaxError,
    Select,
    Step,
    parse_path,
)
from connector.mapping_rules import Source

LEAD: dict[str, Any] = {
    "calc_name": "Maturity",
    "user_info": {"email": "a@b.co", "empty": None},
    "results": [
        {"title": "Score", "value": 72},
        {"title": " Custom Segment ", "value": "Growth"},
        {"title": 7, "value": "seven"},
        "not an object",
    ],
    "questions": [
        {"question": "How big is your team?", "answer": "11-50"},
        {"question": "Tools?", "answer": ["CRM", "Email"]},
        {"question": "Skipped", "answer": None},
    ],
    "Which plan do you use?": "Team",
    "a.b": {"c[d]": 1, 'say "hi"': 2},
}
META = {"source": "acme", "received_at": 1714558830000, "profile": "default"}


def resolve(text: str, document: Any = LEAD, meta: dict[str, Any] = META) -> Any:
    """Where a path leads: a fact of the record as a source reads it, else the path's walker."""
    path = parse_path(text)
    if path.meta is not None:
        return Source((path,)).compile()(document, meta)
    return path.walker()(document)


def walker(steps: tuple[Step, ...]) -> Any:
    return Path("", steps).walker()


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("calc_name", "Maturity"),
        ("user_info.email", "a@b.co"),
        ("results.0.value", 72),
        ("results[0].value", 72),
        ("results[-1]", "not an object"),
        ("results[title=Score].value", 72),
        ("results[title=score].value", 72),
        ("results[title = custom segment ].value", "Growth"),
        ("results[title=7].value", "seven"),
        ("questions[question=How big is your team?].answer", "11-50"),
        ('questions[question="Tools?"].answer', ["CRM", "Email"]),
        ("questions[*].answer", ["11-50", ["CRM", "Email"]]),
        ("questions[*].question", ["How big is your team?", "Tools?", "Skipped"]),
        ('"Which plan do you use?"', "Team"),
        ('"a.b"."c[d]"', 1),
        ('"a.b"."say \\"hi\\""', 2),
        ("$source", "acme"),
        ("$received_at", 1714558830000),
        ("$profile", "default"),
    ],
)
def test_paths_find_values(text: str, value: Any) -> None:
    assert resolve(text) == value


@pytest.mark.parametrize(
    "text",
    [
        "nope",
        "user_info.nope",
        "user_info.empty",
        "user_info.email.more",
        "results.9.value",
        "results[9]",
        "results[-9]",
        "results[title=Nope].value",
        "calc_name[0]",
        "calc_name[title=x]",
        "calc_name[*]",
        "user_info[0]",
        "results.x",
    ],
)
def test_paths_that_lead_nowhere_are_missing(text: str) -> None:
    assert resolve(text) is MISSING


def test_a_record_field_that_is_unknown_at_run_time_is_missing() -> None:
    assert resolve("$received_at", LEAD, {"received_at": None}) is MISSING


def test_paths_parse_into_steps() -> None:
    path = parse_path('results[title="Score [%]"].value[*][2].x')
    assert path.steps == (
        Key("results"),
        Select("title", "score [%]"),
        Key("value"),
        Each(),
        Index(2),
        Key("x"),
    )
    assert str(path) == path.text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the path is empty"),
        ("a.", "a key is missing (at character 3)"),
        (".a", "a key is missing (at character 1)"),
        ("a..b", "a key is missing (at character 3)"),
        ("a[", "a selector must end with ']' (at character 3)"),
        ("a[1", "a selector must end with ']' (at character 4)"),
        ("a[*", "a selector must end with ']' (at character 4)"),
        ("a[x]", "a selector is [N], [*] or [field=value] (at character 4)"),
        ("a[x=]", "a selector needs a value after '=' (at character 5)"),
        ("a[ =x]", "a selector needs a field before '=' (at character 4)"),
        ("a[x=y", "a selector must end with ']' (at character 5)"),
        ("a[-]", "a list position must be a whole number (at character 4)"),
        ("a[1234567890]", "a list position must be a whole number"),
        ("a[x=y[z]]", "quote a selector value holding"),
        ("a]b", "quote a key holding ']' (at character 2)"),
        ('a"b', "quote a key holding '\"' (at character 2)"),
        ('"a', "a quoted key or value is not closed"),
        ('"a"b', "'b' cannot follow a key; use '.' or '[' (at character 4)"),
        ("$nope", "unknown record field '$nope'; known: $source, $received_at, $profile"),
    ],
)
def test_bad_paths_say_why_and_where(text: str, message: str) -> None:
    with pytest.raises(PathSyntaxError) as caught:
        parse_path(text)
    assert message in str(caught.value)


keys = st.text(min_size=1, max_size=12)


def quoted(key: str) -> str:
    return '"' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'


@given(st.lists(keys, min_size=1, max_size=4), st.integers())
def test_any_quoted_keys_lead_back_to_their_value(path: list[str], value: int) -> None:
    document: Any = value
    for key in reversed(path):
        document = {key: document}
    assert resolve(".".join(quoted(key) for key in path), document) == value


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.sampled_from(["a", "b", "0", "title", "value"]), children, max_size=3)
    ),
    max_leaves=15,
)
path_texts = st.sampled_from(
    ["a", "a.b", "a.0", "a[0].b", "a[-1]", "a[title=x].value", "a[*].b", "a[*][*]", "b.a.title"]
)


@given(json_values, path_texts)
def test_resolving_never_fails_and_never_returns_null(document: Any, text: str) -> None:
    value = resolve(text, document)
    assert value is not None
    if isinstance(value, list) and "[*]" in text:
        assert MISSING not in value and None not in value


class Lead(dict[str, Any]):
    """A mapping that is not a dict."""


def as_leads(value: Any) -> Any:
    """The same JSON value with every object a Lead."""
    if isinstance(value, dict):
        return Lead({key: as_leads(item) for key, item in value.items()})
    if isinstance(value, list):
        return [as_leads(item) for item in value]
    return value


steps = st.lists(
    st.sampled_from(
        [
            *(Key("a"), Key("b"), Key("0"), Key("title")),
            *(Index(0), Index(-1), Index(5), Each()),
            *(Select("title", "x"), Select("value", "1"), Select("b", "")),
        ]
    ),
    max_size=5,
).map(tuple)


@given(json_values, steps)
def test_any_mapping_is_read_as_a_dict_is(node: Any, path: tuple[Step, ...]) -> None:
    assert walker(path)(as_leads(node)) == walker(path)(node)


def test_walkers_read_selector_fields_as_text() -> None:
    path = parse_path("a[title=1].v").steps
    for node in ({"a": [{"title": 1, "v": "n"}]}, {"a": [Lead(title=" 1 ", v="n")]}):
        assert walker(path)(node) == "n"
    assert walker(path)({"a": [{"title": 1}]}) is MISSING


def test_a_list_position_written_as_a_key_reads_a_list_only() -> None:
    assert resolve("a.1", {"a": ["x", "y"]}) == "y"
    assert resolve("a.1", {"a": {"1": "z"}}) == "z"
    assert resolve("a.\u0661", {"a": ["x", "y"]}) is MISSING  # digits, but not ASCII ones
    assert resolve("a.1234567890", {"a": ["x"]}) is MISSING
    assert resolve("a[*]", {"a": ["x", None, []]}) == ["x", None, []]
    assert resolve("a[*].b", {"a": [{"b": 1}, None, {"b": None}, {"c": 2}]}) == [1]
