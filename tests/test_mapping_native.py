"""The native plan maps a raw lead exactly as the Python path does, or declines it.

Differential tests: for each body, `native(body, source, received_at_ms)` is None or equal, types
and key order included, to what `map_record()` gives; where `map_record()` raises
MappingFailure, the native plan declines. Coverage tests keep a plan that declines everything
from passing.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector import mapping_native
from connector.intake import record_facts
from connector.mapping import (
    BrazeUpdate,
    Filtered,
    Mapping,
    MappingFailure,
    load_mapping,
    map_record,
)
from connector.mapping_rules import Profile
from outgrow_braze_dev.backlog import lead, raw_record

JSON = "application/json"
RECEIVED_AT_MS = 1_714_558_830_000  # 2024-05-01T10:20:30.000Z
BENCH_LEADS, BENCH_USERS = 2_000, 20_000

NativePlan = Callable[[bytes, str, int | None], BrazeUpdate | Filtered | None]
Case = tuple[str, str]  # (mapping file, profile name)
Plans = dict[Case, tuple[Mapping, NativePlan | None]]
Outcome = BrazeUpdate | Filtered | MappingFailure

PROPERTY = settings(
    max_examples=600,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# --- mapping files -----------------------------------------------------------------------------

FILTERS = """\
version: 1
identity:
  - email: {from: [user_info.email, email], transform: [trim, lower]}
filters:
  - name: test_domain
    drop_if: {from: [user_info.email, email], ends_with: ["@outgrow.co", "@straße.de"]}
  - name: staff
    drop_if: {from: email, starts_with: [staff., "ﬁ"]}
  - name: demo
    drop_if: {from: [calc_name, content_name], contains: [demo, "Σ"]}
  - name: sandbox
    drop_if: {from: $source, equals: [sandbox, qa]}
  - name: spam
    drop_if: {from: "results[title=Spam].value", exists: true}
  - name: outcome
    drop_if: {from: "results[title=Outcome].value", equals: [x, "İ"]}
  - name: kind
    drop_if: {from: type, equals: ß}
  - name: zero
    drop_if: {from: code, equals: [0, "72", true]}
  - name: tagged
    drop_if: {from: "tags[*]", equals: spam}
  - name: bot_without_answers
    drop_if:
      - {from: device.bot, equals: true}
      - {from: questions, exists: false}
  - name: flagged
    drop_if: {from: [test, hidden_fields.test], exists: true}
attributes:
  segment: [outcome, segment]
events:
  - name: submitted
    time: [created_at, $received_at]
"""

REGEX = """\
version: 1
identity:
  - email: {from: [user_info.email, email], transform: [trim, lower]}
filters:
  - name: numbered
    drop_if: {from: code, matches: '^T-\\d+$'}
  - name: growth
    drop_if: {from: [note, device.segment], matches: '(?i)^gr[oö]wth\\s+stage$'}
  - name: word
    drop_if: {from: device.name, matches: '\\bdemo\\b'}
attributes:
  name: calc_name
"""

IDENTITY = """\
version: 1
identity:
  - external_id:
      from: [external_id, hidden_fields.external_id, "hidden[name=external id].value"]
      transform: [trim, {prefix: "crm-"}]
  - braze_id: {from: braze_id, transform: [upper]}
  - email: {from: [user_info.email, email], transform: [trim, lower]}
  - phone: {from: [user_info.phone, phone], transform: [{suffix: " ext"}, trim]}
  - alias:
      label: outgrow_email_sha256
      from: [lead.email, id]
      transform: [trim, lower, sha256]
attributes:
  email: email
  phone: phone
  first_name: user_info.fullName
events:
  - name: seen
"""

ALIAS_FIRST = """\
version: 1
identity:
  - alias: {label: lead, from: [id, _id], transform: [sha256, {prefix: "h-"}, upper]}
  - phone: phone
  - external_id: {from: external_id, transform: [lower, {suffix: "-x"}]}
attributes:
  plan: {value: gold}
"""

ATTRIBUTES = """\
version: 1
identity:
  - external_id: [external_id, id]
attributes:
  score: {from: ["results[title=Score].value", score], type: number}
  whole: {from: [count, level], type: integer}
  when: {from: [done_at, created_at, $received_at], type: time}
  name: [user_info.fullName, name]
  segment: ["results[title=Outcome].value", outcome, segment]
  note: {from: note, default: none given}
  level: {from: level, type: integer, default: 3}
  lead: {value: true, type: boolean}
  launch: {value: 2024-05-01, type: time}
  plan: {value: gold}
  list: {value: [a, b], type: array}
  fixed_count: {value: 7, type: integer}
  ratio: {value: 0.5, type: number}
  city: user_info.address.city
  content: [calc_name, content_name]
  odd: '"odd.key"'
  source: $source
  received: $received_at
  profile: $profile
"""

# What mapping_native leaves to Python, read from fields the plain leads below do not have.
ATTRIBUTES_PYTHON = """\
version: 1
identity:
  - external_id: [external_id, id]
attributes:
  agreed: {from: ["questions[question=Agree?].answer", agreed], type: boolean}
  fresh: {from: fresh, type: boolean, default: false}
  tags: {from: tags, type: array, split: ","}
  answers: {from: "questions[*].answer", type: array}
  titles: {from: "hidden[*].title", type: array}
  codes: {from: code, type: array}
  second: {from: "questions.1.answer", type: integer}
  third: questions.2.answer
  last: "questions[-1].answer"
  upper_code: {from: code, transform: [trim, upper]}
  hashed: {from: lead.email, transform: [trim, lower, sha256]}
  wrapped: {from: note, transform: [{prefix: "<"}, {suffix: ">"}]}
"""

RECEIVED = """\
version: 1
identity:
  - email: email
attributes:
  received_time: {from: $received_at, type: time}
  received_number: {from: $received_at, type: integer}
  received_text: $received_at
  stamp: {from: created_at, type: time}
"""

REQUIRED = """\
version: 1
identity:
  - email: email
attributes:
  score: {from: ["results[title=Score].value", score], type: number, required: true}
  name: {from: [user_info.fullName, name], required: true}
  when: {from: created_at, type: time, required: true}
"""

EVENTS = """\
version: 1
identity:
  - email: {from: [user_info.email, email], transform: [trim, lower]}
attributes:
  last: {from: [created_at, $received_at], type: time}
events:
  - name: submitted
    time: [created_at, $received_at]
    properties:
      score: {from: ["results[title=Score].value", score], type: number}
      lead_id: [id, _id, lead_id]
      source: $source
      profile: $profile
      received: {from: $received_at, type: integer}
      answers: {from: "questions[*].answer", type: array}
      flag: {from: agreed, type: boolean, default: false}
      fixed: {value: 1, type: integer}
  - name: done
    time: {from: done_at, default: 1714558830}
  - name: received
    time: $received_at
  - name: fixed
    time: {value: 2024-05-01T10:20:30Z}
  - name: bare
"""

PROFILES = """\
version: 1
content_id_from: [content.id, calc_id]
identity:
  - email: {from: [user_info.email, email], transform: [trim, lower]}
filters:
  - name: test
    drop_if: {from: [user_info.email, email], ends_with: "@outgrow.co"}
attributes:
  common: {value: base}
  shared: {value: base}
  score: {from: ["results[title=Score].value", score], type: number}
events:
  - name: submitted
    time: [created_at, $received_at]
    properties:
      profile: $profile
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
    filters: []
    events:
      - name: partner_submitted
        time: $received_at
  - name: regex-site
    when: {source: regex}
    filters:
      - name: bots
        drop_if: {from: user_info.nickname, matches: "^bot[0-9]+$"}
  - name: bare
    when: {source: bare}
    inherit: false
    identity:
      - external_id: id
"""

FILES = {
    "filters": FILTERS,
    "regex": REGEX,
    "identity": IDENTITY,
    "alias_first": ALIAS_FIRST,
    "attributes": ATTRIBUTES,
    "attributes_python": ATTRIBUTES_PYTHON,
    "received": RECEIVED,
    "required": REQUIRED,
    "events": EVENTS,
    "profiles": PROFILES,
}

# (mapping, profile): every profile here has a native plan (compile_native gives one whenever
# the extension is built); what a plan does not cover, it declines record by record.
CASE_LIST = [
    ("default", "default"),
    ("filters", "default"),
    ("regex", "default"),
    ("identity", "default"),
    ("alias_first", "default"),
    ("attributes", "default"),
    ("attributes_python", "default"),
    ("received", "default"),
    ("required", "default"),
    ("events", "default"),
    ("profiles", "savings"),
    ("profiles", "partner"),
    ("profiles", "regex-site"),
    ("profiles", "bare"),
    ("profiles", "default"),
]
CASES = [pytest.param(case, id=":".join(case)) for case in CASE_LIST]

# Plain leads, as Outgrow sends them: every mapping here maps (or filters) each one.
PLAIN: dict[str, dict[str, Any]] = {
    "documented": {
        "id": "65f1c2a9e4b0a1b2c3d4e5f6",
        "email": "jane.doe@example.com",
        "calc_id": "5892d26dcbff7e0b1c34bf65",
        "calc_name": "What's your marketing maturity?",
        "type": "Graded Quiz",
        "created_at": "2024-05-01T10:20:30.000Z",
        "user_info": {"fullName": "Jane Doe", "email": " Jane.Doe@Example.com "},
        "results": [{"title": "Score", "value": 72}, {"title": "Outcome", "value": "Growth"}],
    },
    "crm": {
        "id": "l2",
        "external_id": "crm-00000042",
        "hidden_fields": {"external_id": "crm-00000042"},
        "email": "ann@example.org",
        "name": "Ann",
        "score": 72.5,
        "segment": "Expert",
        "content_name": "Find your ideal plan",
        "created_at": "2026-01-01T00:00:00.040Z",
    },
    "test_lead": {
        "id": "l3",
        "email": "someone@outgrow.co",
        "user_info": {"fullName": "Tester", "email": "someone@outgrow.co"},
        "score": 0,
        "created_at": "2025-03-14T09:12:13.589Z",
    },
    "savings": {
        "id": "l4",
        "email": "bo@example.net",
        "calc_id": "5f7b",
        "user_info": {"fullName": "Bo"},
        "results": [
            {"title": "Score", "value": 10},
            {"title": "Projected savings", "value": 168400},
        ],
        "created_at": "2024-05-01T10:20:30.000Z",
    },
}
PLAIN_SOURCES = [("default", RECEIVED_AT_MS), ("partner-eu", 1_767_225_600_000)]


def mapping_of(text: str, path: Path) -> Mapping:
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return load_mapping(path)


@pytest.fixture(scope="module")
def mappings(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Mapping]:
    folder = tmp_path_factory.mktemp("native")
    loaded = {name: mapping_of(text, folder / f"{name}.yaml") for name, text in FILES.items()}
    return {"default": load_mapping(), **loaded}


def profile_of(mapping: Mapping, name: str) -> Profile:
    return next(p for p in (*mapping.profiles, mapping.fallback) if p.name == name)


def alone(mapping: Mapping, profile: Profile) -> Mapping:
    """The mapping with `profile` used for every record, as a native plan of it is."""
    if not mapping.profiles:
        return mapping
    return Mapping(mapping.version, (), profile, mapping.content_id)


@pytest.fixture(scope="module")
def plans(mappings: dict[str, Mapping]) -> Plans:
    """Each case's single-profile mapping and its native plan."""
    found: Plans = {}
    for file, name in CASE_LIST:
        profile = profile_of(mappings[file], name)
        found[file, name] = (alone(mappings[file], profile), mapping_native.compile_native(profile))
    return found


# --- comparing ---------------------------------------------------------------------------------


def python_result(
    mapping: Mapping, body: bytes, source: str, received_at_ms: int | None
) -> Outcome:
    """What the Python path gives for a raw JSON body: the result, or the failure it raises."""
    try:
        return map_record(mapping, body, JSON, source=source, received_at_ms=received_at_ms)
    except MappingFailure as failure:
        return failure


def strict(value: Any) -> Any:
    """`value` with each scalar's type and each dict's key order in it: 1, 1.0, True differ."""
    kind = type(value)
    if kind is dict:
        return ("dict", [(strict(key), strict(item)) for key, item in value.items()])
    if kind is list or kind is tuple:
        return (kind.__name__, [strict(item) for item in value])
    if kind is float:
        return ("float", repr(value))  # -0.0 and 0.0 differ
    if value is None or kind in (bool, int, str):
        return (kind.__name__, value)
    return ("unexpected", kind.__qualname__, repr(value))


def normal(result: Any) -> Any:
    """A result in a form where equal means the same to Braze, types and order included."""
    if type(result) is BrazeUpdate:
        return (
            "BrazeUpdate",
            strict(result.user_key),
            strict(result.identity),
            strict(result.attributes),
            strict(result.events),
            strict(result.attribute_object()),
            strict(result.event_objects()),
        )
    if type(result) is Filtered:
        return ("Filtered", strict(result.rule))
    return ("unexpected", type(result).__qualname__, repr(result))


def disagreement(
    plan: Callable[..., Any], mapping: Mapping, body: bytes, source: str, received_at_ms: int | None
) -> str | None:
    """Say how the native plan departs from the Python path for one record, if it does."""
    expected = python_result(mapping, body, source, received_at_ms)
    try:
        got = plan(body, source, received_at_ms)
    except Exception as exc:  # a plan declines; it never raises
        return f"native raised {exc!r}; Python gives {expected!r}"
    if got is None:
        return None
    if isinstance(expected, MappingFailure):
        return f"native gave {got!r} where Python fails with {expected!r}"
    if normal(got) != normal(expected):
        return f"native gave {got!r}\n  Python gives {expected!r}"
    return None


def covered_plan(plans: Plans, case: Case) -> NativePlan:
    """The case's native plan, which the extension must give."""
    plan = plans[case][1]
    assert plan is not None, f"mapping_native.compile_native() gave None for {case}"
    return plan


# --- strategies --------------------------------------------------------------------------------

SPACES = [" ", "\t", "\n", "\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x1f", "\x85", "\xa0"]
SPACES += ["\u1680", "\u2000", "\u200a", "\u2028", "\u202f", "\u3000", "\u200b", "\ufeff"]
LETTERS = [
    "a",
    "Z",
    "ß",
    "ẞ",
    "İ",
    "\u0131",
    "Σ",
    "ς",
    "\u03c3",
    "ﬁ",
    "\u017f",
    "\u212a",
    "é",
    "e\u0301",
    "ǅ",
]
LETTERS += ["😀", "🏳️\u200d🌈", "\x00", "\x7f", "Ω"]
WORDS = ["@", ".", "-", ",", "%", "$", "0", "1", "7", "٣", "²", "outgrow.co", "@outgrow.co"]
WORDS += ["@OUTGROW.CO", "staff.", "demo", "DEMO", "Score", "spam", "x", "yes", "ON", "checked"]
WORDS += ["T-12", "Growth Stage", "straße", "a@b.co", "  Jane.Doe@Example.com "]
tricky_text = st.lists(st.sampled_from(SPACES + LETTERS + WORDS), max_size=8).map("".join)
long_text = st.builds(
    lambda pad, unit, size: pad + unit * size + pad,
    st.sampled_from(["", " ", "\u3000", "\x1f"]),
    st.sampled_from(["a", "é", "😀", "ﬁ", "\u3000", "ab "]),
    st.integers(85, 260),
) | st.text(min_size=250, max_size=270)


def digits(low: int, high: int, signs: str = "") -> st.SearchStrategy[str]:
    """Text of `low` to `high` ASCII digits, leading zeros allowed, after one of `signs`."""
    size = st.integers(low, high)
    number = size.flatmap(lambda n: st.integers(0, 10**n - 1).map(lambda v: f"{v:0{n}d}"))
    return st.builds(str.__add__, st.sampled_from(["", *signs]), number)


digit_text = st.one_of(
    digits(1, 4),
    digits(2, 21).map(lambda text: "0" + text[1:]),
    digits(19, 25, "-"),
    st.builds(str.__add__, digits(9, 16, "+-"), st.sampled_from(["", ".5", ".0", ".1234"])),
    digits(63, 66),
    st.sampled_from(
        ["٣", "٣٣", "1٣", "²", "\uff11\uff12", "0", "00", "-0", "+5", " 72 ", "7\xa0", "1_0"]
    ),
)
NUMBERS = ["$1,234.50", "75%", "72 kg", "USD 12", "\u22123", "1e3", "1E3", "12,50", "-$5", "$-5"]
NUMBERS += ["+ 5", ".5", "5.", "1e999", "1,234", "1,23", "€ 3", "72.0", "72.50", "0x10", "inf"]
NUMBERS += ["NaN", "-0.0", "5 kilogramme", "5 ß", "5 \u017f", "1e-400", "9" * 64, "1" * 65, "N/A"]
NUMBERS += ["72.0000000000000001"]
number_text = st.sampled_from(NUMBERS)
bool_text = st.sampled_from(["yes", "No", "ON", "off", "checked", "Y", "n", "0", "1", " true "])
bool_text |= st.sampled_from(["TRUE", "Unchecked", "yes\x1f", "\u3000yes", "ye", "2", "on\x85"])


def canonical(year: int, month: int, day: int, hour: int, minute: int, second: int) -> str:
    return (
        f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}.{second * 17:03d}Z"
    )


YEARS = [0, 1, 999, 1969, 1970, 2000, 2024, 2026, 2100, 2999, 3000, 3001, 9999]
canonical_times = st.builds(
    canonical,
    st.sampled_from(YEARS),
    st.integers(1, 12) | st.sampled_from([0, 13]),
    st.integers(1, 28) | st.sampled_from([0, 29, 30, 31, 32]),
    st.integers(0, 23) | st.sampled_from([24, 25]),
    st.integers(0, 59) | st.just(60),
    st.integers(0, 58) | st.sampled_from([59, 60, 61]),
)
TIME_FORMS = [
    lambda t: t,
    lambda t: t.replace("Z", "z"),
    lambda t: t.replace("T", "t"),
    lambda t: t.replace("T", " "),
    lambda t: t.replace("Z", "+00:00"),
    lambda t: t.replace("Z", "+02:00"),
    lambda t: t.replace("Z", ""),
    lambda t: t.replace(".", ",", 1),
    lambda t: t[:19] + "Z",
    lambda t: t[:10],
    lambda t: t.replace("Z", "0Z"),
    lambda t: f" {t} ",
    lambda t: t + "\u3000",
    lambda t: t.translate({ord(d): ord(d) + 0xFEE0 for d in "0123456789"}),
]
other_times = st.builds(lambda text, form: form(text), canonical_times, st.sampled_from(TIME_FORMS))
OTHER_TIMES = ["Wed, 01 May 2024 10:20:30 +0000", "Wed May 01 2024 10:20:30 GMT+0000 (UTC)"]
OTHER_TIMES += ["soon", "1714558830", "1714558830000", "1714558830.5", "99999999999", "-1"]
OTHER_TIMES += ["100000000000"]
other_times |= st.sampled_from(OTHER_TIMES)
INTS = [2**63 - 1, 2**63, 2**63 + 1, 2**64 - 1, -(2**63), -(2**63) + 1, 2**53, 2**53 + 1]
INTS += [-(2**53) - 1, 0, 1, -1, 72, 99_999_999_999, 100_000_000_000, 1_714_558_830]
INTS += [1_714_558_830_000, 32_503_680_000, 32_535_216_000_000, -62_135_596_800, 10**16]
INTS += [-62_135_596_800_000, 253_402_300_800_000, 10**15 + 1]
ints = st.sampled_from(INTS) | st.integers(-(2**63), 2**64 - 1) | st.integers(-1000, 1000)
FLOATS = [-0.0, 0.0, 72.0, 1e300, -1e300, 1e16, 9999999999999998.0, 1e15 + 0.5, 2.0**53]
FLOATS += [2.0**63, 2.0**64, 0.1, 1e-7, 5e-324, 1.5, 1714558830.5, 1714558830000.0, 1e22, 0.5]
FLOATS += [1.0, 1e11, 123456789.125, -72.0, 1e-5, 1e21, 1.7976931348623157e308]
floats = st.sampled_from(FLOATS) | st.floats(allow_nan=False, allow_infinity=False)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from(["", " ", "\t\n", "\u3000", "\x1f"]),
    tricky_text,
    long_text,
    digit_text,
    number_text,
    bool_text,
    canonical_times,
    other_times,
    ints,
    floats,
    st.just([]),
    st.just({}),
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.sampled_from(["title", "value", "email", "a"]), children, max_size=3)
    ),
    max_leaves=6,
)
TITLES = ["Score", " score ", "SCORE", "Quiz Score", "Total Score", "Outcome", "Segment", "Spam"]
TITLES += [
    "Custom Segment",
    "Projected savings",
    "\u017fcore",
    "Score\xa0",
    "Score\x1f",
    "\uff33\uff23\uff2f\uff32\uff25",
]
titles = st.one_of(st.sampled_from(TITLES), st.sampled_from(TITLES), scalars)
numbers = st.one_of(ints, floats, digit_text, number_text)
times = st.one_of(canonical_times, canonical_times, other_times, ints, floats)
texts = st.one_of(tricky_text, tricky_text, long_text, st.text(max_size=12))


def mostly(likely: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Values of the likely kind three times in four, any scalar otherwise."""
    return st.one_of(likely, likely, likely, scalars)


entries = st.fixed_dictionaries(
    {},
    optional={
        "title": titles,
        "value": mostly(numbers | texts) | json_values,
        "question": st.sampled_from(["Agree?", " agree? ", "AGREE?", "n"]) | scalars,
        "answer": json_values,
        "name": st.sampled_from(["external id", "External ID "]),
    },
)
entry_lists = st.lists(entries, max_size=4) | json_values
IDS = ["a@b.co", " Jane.Doe@Example.com ", "x@outgrow.co", "X@OUTGROW.CO ", "u1", " U2 ", ""]
IDS += ["  ", "\u3000", "\x1f", "STRASSE@straße.de", "staff.jo@acme.com", "ﬁ@x.co", "İ@x.co"]
emails = st.builds(
    lambda before, local, domain, after: f"{before}{local}@{domain}{after}",
    st.sampled_from(["", "", " ", "\t", "\u3000", "\x1f", "\xa0"]),
    st.sampled_from(["jane.doe", "Jane.Doe", "STAFF.jo", "ﬁ", "İ", "ß", "ΑΣ", "a", "😀"]),
    st.sampled_from(["example.com", "EXAMPLE.com", "outgrow.co", "OUTGROW.CO", "straße.de"]),
    st.sampled_from(["", "", " ", "\n", "\u2000", "\x1c", "\x85"]),
)
identities = st.one_of(emails, emails, st.sampled_from(IDS), scalars)
people = st.fixed_dictionaries(
    {},
    optional={
        "email": identities,
        "external_id": identities,
        "fullName": mostly(texts),
        "nickname": scalars | st.sampled_from(["bot7", " BOT12 ", "bot٣"]),
        "phone": identities,
        "address": st.fixed_dictionaries({"city": scalars}) | json_values,
    },
)
FIELDS = {
    "email": identities,
    "external_id": identities,
    "id": identities,
    "_id": identities,
    "lead_id": identities,
    "phone": identities,
    "braze_id": identities,
    "user_info": people | json_values,
    "hidden_fields": st.fixed_dictionaries({}, optional={"external_id": identities}),
    "hidden": entry_lists,
    "lead": st.fixed_dictionaries({"email": identities}),
    "results": entry_lists,
    "questions": entry_lists,
    "score": mostly(numbers),
    "outcome": mostly(texts),
    "segment": mostly(texts),
    "calc_name": mostly(texts | st.sampled_from(["Quiz DEMO v2", "démo", "ΣΑΣ"])),
    "content_name": mostly(texts),
    "created_at": mostly(times),
    "done_at": mostly(times),
    "calc_id": st.sampled_from(["5f7b", " 6A00 ", "x", "5F7B\u3000"]) | scalars,
    "content": st.fixed_dictionaries({"id": st.sampled_from(["6a00", "5f7b"]) | scalars}),
    "type": st.sampled_from(["ß", "SS", "ẞ", "Graded Quiz"]) | scalars,
    "tags": json_values | st.sampled_from(["a, b,,a", "spam", ","]),
    "count": mostly(numbers),
    "level": mostly(numbers),
    "fresh": mostly(bool_text | st.booleans() | st.sampled_from([0, 1, 0.0, 1.0, 2])),
    "agreed": mostly(bool_text | st.booleans()),
    "note": mostly(texts),
    "name": mostly(texts),
    "code": scalars | st.sampled_from([" t-12 ", "T-٣", "T-12\n"]),
    "device": st.fixed_dictionaries(
        {}, optional={"bot": scalars, "segment": scalars, "name": scalars}
    ),
    "test": scalars,
    "odd.key": scalars,
}
EXTRA_KEYS = ["event", "x", "", " email", "Email", "EMAIL", "😀", "url_params", "answered"]


def some_fields(most: int) -> st.SearchStrategy[dict[str, Any]]:
    """Up to `most` of the fields the mappings read, each with its own kind of values."""
    names = st.lists(st.sampled_from(sorted(FIELDS)), max_size=most, unique=True)
    return names.flatmap(lambda chosen: st.fixed_dictionaries({n: FIELDS[n] for n in chosen}))


documents = st.builds(
    lambda extra, email, known: {**extra, **email, **known},
    st.dictionaries(st.sampled_from(EXTRA_KEYS) | st.text(max_size=4), json_values, max_size=2),
    st.fixed_dictionaries({}, optional={"email": emails}),
    some_fields(8),
)
bench_documents = st.builds(
    lambda index, changes: {**lead(index, BENCH_USERS), **changes},
    st.integers(0, 10**6),
    some_fields(3),
)

# Raw JSON text, for what orjson.dumps never writes.
RAW_SCALARS = [
    "100000000000000000000",
    "-9223372036854775809",
    "-9223372036854775808",
    "9223372036854775807",
    "9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "-0",
    "-0.0",
    "0e0",
    "-0e-0",
    "1e400",
    "-1e400",
    "1.5E3",
    "72.0",
    "72.00",
    "7.2e1",
    "1E2",
    "1e-400",
    "0.30000000000000001665",
    "2.2250738585072011e-308",
    "9007199254740993",
    "9007199254740993.0",
    "1714558830",
    "1714558830000",
    "01",
    "1.",
    ".5",
    "+1",
    "NaN",
    "Infinity",
    "true",
    "false",
    "null",
    "[]",
    "{}",
    '""',
    '" "',
    r'"\u00e9"',
    r'"\ud83d\ude00"',
    r'"a\/b"',
    r'"\ud800"',
    r'"\udc00x"',
    r'"a\u0000b"',
    r'"\u0020A@B.co\u0009"',
    r'"\u0041@outgrow.co"',
    r'"\u00df@x.co"',
    r'"2024-05-01T10:20:30.000Z"',
    r'"2024-05-01T10:20:30.000\u005a"',
    '"a\tb"',
    '"a\x01b"',
    '"x@y.co',
    "tru",
    "[" * 200 + "]" * 200,
    "[" * 1024 + "]" * 1024,
    "[" * 1025 + "]" * 1025,
    '{"a":' * 1023 + "1" + "}" * 1023,
    '{"a":' * 1025 + "1" + "}" * 1025,
]
RAW_KEYS = ['"email"', r'"e\u006dail"', '"user_info"', '"score"', '"created_at"', '"id"']
RAW_KEYS += ['"score"', '"created_at"', '"calc_name"', '"external_id"', '"results"']
RAW_KEYS += ['"external_id"', '"calc_name"', '"results"', '"x"', r'"\ud83d\ude00"', '""']
RAW_KEYS += ['"outcome"', '"questions"', r'"\ud800"']
SEPARATORS = ["", "", " ", "\n", "\t", "\r\n  "]


def raw_text(text: str, ascii_only: bool) -> str:
    return json.dumps(text, ensure_ascii=ascii_only)


def raw_object(pairs: list[tuple[str, str]], space: str) -> str:
    fields = f",{space}".join(f"{key}{space}:{space}{value}" for key, value in pairs)
    return f"{{{space}{fields}{space}}}"


RAW_NUMBERS = [text for text in RAW_SCALARS if text[:1] in "+-.0123456789NI"]
RAW_STRINGS = [text for text in RAW_SCALARS if text[:1] == '"']
raw_scalars = st.one_of(
    st.sampled_from(RAW_NUMBERS),
    st.sampled_from(RAW_NUMBERS),
    st.sampled_from(RAW_STRINGS),
    st.sampled_from(RAW_SCALARS),
    st.builds(raw_text, tricky_text, st.booleans()),
)
raw_scalars |= st.builds(
    lambda whole, fraction, exponent: whole + fraction + exponent,
    digits(1, 25, "-").filter(lambda text: text.lstrip("-")[:1] != "0" or len(text) < 3),
    st.sampled_from(["", "."]).flatmap(
        lambda dot: digits(1, 25).map(dot.__add__) if dot else st.just("")
    ),
    st.sampled_from(["", "e", "E", "e+", "e-", "E-"]).flatmap(
        lambda e: digits(1, 3).map(e.__add__) if e else st.just("")
    ),
)
raw_values = st.recursive(
    raw_scalars,
    lambda children: (
        st.lists(children, max_size=3).map(lambda items: "[" + ",".join(items) + "]")
        | st.builds(
            raw_object,
            st.lists(st.tuples(st.sampled_from([*RAW_KEYS, '"title"', '"value"']), children)),
            st.sampled_from(SEPARATORS),
        )
    ),
    max_leaves=5,
)
raw_values |= st.builds(lambda value: f'[{{"title":"Score","value":{value}}}]', raw_scalars)
raw_values |= st.builds(lambda value: f'{{"email":{value}}}', raw_scalars)
raw_objects = st.builds(
    lambda email, pairs, space: raw_object([('"email"', email), *pairs], space).encode(),
    st.sampled_from(['"a@b.co"', '"a@b.co"', *RAW_STRINGS]),
    st.lists(st.tuples(st.sampled_from(RAW_KEYS), raw_values), max_size=5),
    st.sampled_from(SEPARATORS),
)
MARK = "\u0000mark\u0000"
SPLICE_AT: list[Callable[[Any], dict[str, Any]]] = [
    lambda mark: {"score": mark},
    lambda mark: {"created_at": mark},
    lambda mark: {"calc_name": mark},
    lambda mark: {"email": mark},
    lambda mark: {"external_id": mark},
    lambda mark: {"id": mark},
    lambda mark: {"count": mark},
    lambda mark: {"name": mark},
    lambda mark: {"user_info": {"email": mark, "fullName": mark}},
    lambda mark: {"results": [{"title": "Score", "value": mark}]},
    lambda mark: {"results": [{"title": mark, "value": 5}]},
]


def spliced(document: dict[str, Any], where: Callable[[Any], dict[str, Any]], raw: str) -> bytes:
    """The lead as JSON, with raw JSON text where `where` puts the mark."""
    text = orjson.dumps({**document, **where(MARK)})
    return text.replace(orjson.dumps(MARK), raw.encode())


raw_leads = st.builds(spliced, documents, st.sampled_from(SPLICE_AT), raw_scalars)
PREFIXES = [b""] * 6 + [b" ", b"\n\t\r ", b"\xef\xbb\xbf", b"\x0c", b"\x00"]
SUFFIXES = [b""] * 6 + [b" \n", b"x", b"}", b",", b"\x00", b"{}", b"\n\n", b"\x0c"]
BAD_BYTES = [b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xc0\xaf", b"\xf4\x90\x80\x80", b"\x80"]
wrapped = st.builds(
    lambda prefix, body, suffix: prefix + body + suffix,
    st.sampled_from(PREFIXES),
    raw_objects | documents.map(orjson.dumps),
    st.sampled_from(SUFFIXES),
)
corrupted = st.builds(
    lambda body, at, bad: body[:at] + bad + body[at:],
    documents.map(orjson.dumps),
    st.integers(0, 200),
    st.sampled_from(BAD_BYTES),
)
bodies = st.one_of(
    documents.map(orjson.dumps),
    documents.map(orjson.dumps),
    documents.map(orjson.dumps),
    bench_documents.map(orjson.dumps),
    bench_documents.map(orjson.dumps),
    raw_objects,
    raw_leads,
    raw_leads,
    wrapped,
    corrupted,
    st.sampled_from([b"", b" ", b"\n\t", b"\x0b", b"[]", b'"x"', b"1", b"null", b"{}"]),
)
SOURCES = ["default", "default", "", " ", "acme", "partner-eu", "partner-us", "bare", "regex"]
SOURCES += ["sandbox", "QA", "ß", "Σ", "\u3000", "😀", "a" * 300]
sources = st.sampled_from(SOURCES)
RECEIVED_TIMES = [0, 1, -1, 1_714_558_830, RECEIVED_AT_MS, 1_767_225_600_000, 99_999_999_999]
RECEIVED_TIMES += [100_000_000_000, 32_503_680_000_000, 32_535_215_999_999, 32_535_216_000_000]
RECEIVED_TIMES += [-62_135_596_800_000, -62_135_596_800_001, 2**53 + 1, 2**63 - 1, 2**63, 2**64]
RECEIVED_TIMES += [10**19 - 1, -(2**63), -(2**63) - 1, 10**30]
received = st.none() | st.sampled_from(RECEIVED_TIMES) | st.integers(0, 2**45)
received |= st.integers(-(2**70), 2**70)

# --- hand-written bodies -----------------------------------------------------------------------

DEEP = "[" * 200 + "]" * 200
HAND_WRITTEN = [
    b"",
    b" ",
    b"\n\t",
    b"\x0b",
    b"\x0c",
    b"[]",
    b'"x"',
    b"1",
    b"null",
    b"true",
    b'[{"email":"a@b.co"}]',
    b"{}",
    b"{ }",
    b'{"email":"a@x.com","email":"b@x.com"}',
    b'{"email":"a@outgrow.co","email":"b@x.com"}',
    b'{"email":"b@x.com","email":"a@outgrow.co"}',
    b'{"user_info":{"email":"a@x.com"},"user_info":{"fullName":"A"},"email":"c@x.com"}',
    b'{"email":"a@x.com","score":1,"score":"2"}',
    rb'{"email":"\u00e9@x.com"}',
    rb'{"email":"\ud83d\ude00@x.com"}',
    rb'{"email":"a\/b@x.com","calc_name":"a\/b"}',
    rb'{"email":"\ud800@x.com"}',
    rb'{"email":"a@x.com","calc_name":"\ud800"}',
    rb'{"email":"a@x.com","unread":"\udc00"}',
    rb'{"e\u006dail":"a@x.com"}',
    b'{"email":"a@x.com","score":100000000000000000000}',
    b'{"email":"a@x.com","score":-9223372036854775809}',
    b'{"email":"a@x.com","score":18446744073709551616}',
    b'{"email":"a@x.com","score":18446744073709551615}',
    b'{"email":"a@x.com","score":-0}',
    b'{"email":"a@x.com","score":-0.0}',
    b'{"email":"a@x.com","score":1e400}',
    b'{"email":"a@x.com","score":1.5E3}',
    b'{"email":"a@x.com","created_at":1.5E12}',
    b'{"email":"a@x.com","calc_name":100000000000000000000}',
    b'{"email":"a@x.com","calc_name":-0}',
    b'{"email":"a@x.com","calc_name":1e16}',
    b'{"email":"a@x.com","calc_name":1e-7}',
    b'{"id":100000000000000000000,"external_id":18446744073709551615}',
    b' {"email":"a@x.com"} ',
    b'\n\t\r {"email":"a@x.com"}\n\t\r ',
    b'\xef\xbb\xbf{"email":"a@x.com"}',
    b'{"email":"a@x.com"} x',
    b'{"email":"a@x.com"}{}',
    b'{"email":"a@x.com"}\x00',
    b'{"email":"a\xff@x.com"}',
    b'{"email":"a@x.com","unread":"\xed\xa0\x80"}',
    b'{"email":"a@x.com",}',
    b"{'email':'a@x.com'}",
    b'{"email":"a@x.com" "x":1}',
    b'{"email":"a@x.com","score":NaN}',
    b'{"email":"a@x.com","score":01}',
    b'{"email":"a@x.com","calc_name":"tab\there"}',
    ('{"email":"a@x.com","score":' + DEEP + "}").encode(),
    ('{"email":"a@x.com","unread":' + DEEP + "}").encode(),
    ('{"email":"a@x.com","unread":' + "[" * 1025 + "]" * 1025 + "}").encode(),
    ('{"email":"a@x.com","unread":' + '{"a":' * 1024 + "1" + "}" * 1024 + "}").encode(),
    ('{"email":"a@x.com","calc_name":"' + "😀" * 256 + '"}').encode(),
    ('{"email":"a@x.com","calc_name":"' + "e\u0301" * 128 + '"}').encode(),
    ('{"email":"' + "a" * 300 + '@x.com"}').encode(),
    b'{"email":" \\u001f a@x.com \\u0085\\u00a0\\u3000"}',
    b'{"email":"\\u001c"}',
    b'{"email":"a@x.com","created_at":"2026-02-30T10:20:30.000Z"}',
    b'{"email":"a@x.com","created_at":"2024-05-01T24:00:00.000Z"}',
    b'{"email":"a@x.com","created_at":"0000-01-01T00:00:00.000Z"}',
    b'{"email":"a@x.com","created_at":"3001-01-01T00:00:00.000Z"}',
    b'{"email":"a@x.com","created_at":"3000-12-31T23:59:59.999Z"}',
    b'{"email":"a@x.com","created_at":"0001-01-01T00:00:00.000Z"}',
]
HAND_SOURCES = [("default", RECEIVED_AT_MS), ("", None), ("partner-eu", 1_714_558_830)]
HAND_SOURCES += [("bare", 10**19 - 1), ("regex", -1)]


# --- tests -------------------------------------------------------------------------------------


def test_the_shipped_mapping_has_a_native_plan(mappings: dict[str, Mapping]) -> None:
    default = mappings["default"]
    assert mapping_native.compile_native(default.fallback) is not None
    assert default.native is not None


def test_a_mapping_with_profiles_has_no_single_native_plan(mappings: dict[str, Mapping]) -> None:
    assert mappings["profiles"].native is None


@pytest.mark.parametrize("case", CASES)
def test_every_profile_has_a_native_plan(plans: Plans, case: Case) -> None:
    assert plans[case][1] is not None


@PROPERTY
@given(body=bodies, source=sources, received_at_ms=received)
def test_native_plans_give_what_python_gives_or_decline(
    plans: Plans, body: bytes, source: str, received_at_ms: int | None
) -> None:
    at = received_at_ms
    # Every case sees every body: making a body costs far more than mapping it.
    problems = [
        f"{':'.join(case)}: {problem}"
        for case, (mapping, _) in plans.items()
        if (problem := disagreement(covered_plan(plans, case), mapping, body, source, at))
        is not None
    ]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("case", CASES)
def test_hand_written_bodies(plans: Plans, case: Case) -> None:
    plan = covered_plan(plans, case)
    problems = [
        f"{body[:120]!r} {source!r} {at!r}: {problem}"
        for body in HAND_WRITTEN
        for source, at in HAND_SOURCES
        if (problem := disagreement(plan, plans[case][0], body, source, at)) is not None
    ]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("case", CASES)
def test_plain_leads_are_not_declined(plans: Plans, case: Case) -> None:
    plan = covered_plan(plans, case)
    mapping = plans[case][0]
    for name, document in PLAIN.items():
        for source, at in PLAIN_SOURCES:
            body = orjson.dumps(document)
            expected = python_result(mapping, body, source, at)
            assert not isinstance(expected, MappingFailure), (name, expected)
            got = plan(body, source, at)
            assert got is not None, f"declined the plain lead {name!r} from {source!r}"
            assert normal(got) == normal(expected), (name, got, expected)


@pytest.mark.parametrize("case", CASES)
def test_raw_json_values_in_each_place(plans: Plans, case: Case) -> None:
    plan = covered_plan(plans, case)
    problems = [
        f"{body[:160]!r}: {problem}"
        for lead_name in ("documented", "crm")
        for where in SPLICE_AT
        for raw in RAW_SCALARS
        if (body := spliced(PLAIN[lead_name], where, raw))
        and (problem := disagreement(plan, plans[case][0], body, "default", RECEIVED_AT_MS))
    ]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("source", "received_at_ms"),
    [("\ud800", RECEIVED_AT_MS), ("default", True), ("default", False)],
)
def test_arguments_the_worker_never_passes_are_declined_not_mapped_otherwise(
    mappings: dict[str, Mapping], source: str, received_at_ms: int | None
) -> None:
    mapping = mappings["default"]
    plan = mapping_native.compile_native(mapping.fallback)
    assert plan is not None
    body = orjson.dumps(PLAIN["documented"])
    problem = disagreement(plan, mapping, body, source, received_at_ms)
    assert problem is None, problem


def test_the_native_plan_takes_every_bench_lead(mappings: dict[str, Mapping]) -> None:
    mapping = mappings["default"]
    plan = mapping_native.compile_native(mapping.fallback)
    assert plan is not None
    declined, differing = [], []
    for index in range(BENCH_LEADS):
        _, value, headers = raw_record(index, BENCH_USERS)
        facts = dict(headers)
        source, at = (facts["source"] or b"").decode(), int(facts["received-at"] or b"0")
        got = plan(value, source, at)
        if got is None:
            declined.append(index)
        elif normal(got) != normal(python_result(mapping, value, source, at)):
            differing.append(index)
    assert (declined[:10], differing[:10]) == ([], [])


def test_the_comparison_tells_types_and_order_apart() -> None:
    update = BrazeUpdate("email:a", {"email": "a"}, {"x": 1, "y": "z"}, ({"name": "e"},))
    others = [
        BrazeUpdate("email:a", {"email": "a"}, {"x": 1.0, "y": "z"}, ({"name": "e"},)),
        BrazeUpdate("email:a", {"email": "a"}, {"x": True, "y": "z"}, ({"name": "e"},)),
        BrazeUpdate("email:a", {"email": "a"}, {"y": "z", "x": 1}, ({"name": "e"},)),
        BrazeUpdate("email:a", {"email": "a"}, {"x": 1, "y": "z"}, [{"name": "e"}]),  # type: ignore[arg-type]
        Filtered("email:a"),
    ]
    assert all(normal(other) == normal(other) != normal(update) for other in others)
    assert strict(-0.0) != strict(0.0)
    assert strict(1) == strict(1)


def test_a_result_where_python_fails_or_a_raise_is_a_disagreement(
    mappings: dict[str, Mapping],
) -> None:
    mapping = mappings["default"]
    body = orjson.dumps(lead(1, BENCH_USERS))
    expected = python_result(mapping, body, "default", RECEIVED_AT_MS)
    assert isinstance(expected, BrazeUpdate)
    assert disagreement(lambda *_: expected, mapping, body, "default", RECEIVED_AT_MS) is None
    assert disagreement(lambda *_: None, mapping, b"[]", "default", RECEIVED_AT_MS) is None
    assert disagreement(lambda *_: expected, mapping, b"[]", "default", RECEIVED_AT_MS)
    assert disagreement(lambda *_: 1 / 0, mapping, body, "default", RECEIVED_AT_MS)


def test_without_the_extension_mappings_are_mapped_in_python(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with_native = load_mapping()
    monkeypatch.setattr(mapping_native, "_native", None)
    without = load_mapping()
    assert with_native.native is not None and without.native is None
    for _, value, headers in (raw_record(i, 1_000) for i in range(50)):
        content_type, label, received_at_ms = record_facts(headers)
        python = _map_value(without, value, content_type, label, received_at_ms)
        native = _map_value(with_native, value, content_type, label, received_at_ms)
        assert normal(python) == normal(native)


def _map_value(
    mapping: Mapping, value: bytes, content_type: str, source: str, received_at_ms: int | None
) -> BrazeUpdate | Filtered:
    """What the worker's native branch did before the worker mapped with `map_record` only."""
    if content_type == "application/json" and mapping.native is not None:
        mapped = mapping.native(value, source, received_at_ms)
        if mapped is not None:
            return mapped
    return map_record(mapping, value, content_type, source=source, received_at_ms=received_at_ms)
