"""Check the Outgrow lead JSON Schema and the receiver's OpenAPI description."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from openapi_spec_validator import OpenAPIV31SpecValidator, validate
from referencing.exceptions import Unresolvable

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"
LEAD_SCHEMA_PATH = SCHEMAS / "outgrow-lead.schema.json"
OPENAPI_PATH = SCHEMAS / "receiver.openapi.yaml"
DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"

ERROR_CODES = frozenset(
    {
        "unauthorized",
        "invalid_json",
        "not_an_object",
        "invalid_form",
        "empty_body",
        "invalid_source",
        "unsupported_media_type",
        "payload_too_large",
        "method_not_allowed",
        "request_timeout",
        "not_found",
        "kafka_unavailable",
        "overloaded",
        "draining",
        "message_too_large",
    }
)

# The error codes each webhook response shows in its examples; not_found belongs to no route.
CODES_BY_STATUS = {
    "400": {"invalid_json", "not_an_object", "invalid_form", "empty_body", "invalid_source"},
    "401": {"unauthorized"},
    "405": {"method_not_allowed"},
    "408": {"request_timeout"},
    "413": {"payload_too_large", "message_too_large"},
    "415": {"unsupported_media_type"},
    "503": {"kafka_unavailable", "overloaded", "draining"},
}

EVIDENCE_PREFIXES = (
    "Confirmed (Outgrow public API Lead model",
    "Seen in Outgrow front-end code",
    "Assumed",
)

WEBHOOK_PATHS = ("/webhooks/outgrow", "/webhooks/outgrow/{source}")

# A lead in the API-like shape of section 7 of the Outgrow research notes; values invented.
API_STYLE_LEAD: dict[str, Any] = {
    "event": "LEADS",
    "id": "6612ab34cd56ef7890a1b2c3",
    "calc_id": "60c0ffee1234abcd5678ef90",
    "calc_name": "How ready is your team for remote work?",
    "type": "Assessment",
    "url": "https://contoso.outgrow.us/remote-readiness",
    "created_at": "2024-11-02T16:45:00.000Z",
    "user_info": {"fullName": "Sam Okafor", "email": "sam.okafor@example.com", "phone": "555 0199"},
    "questions": [
        {"question": "How many people work remotely?", "answer": "Most of them"},
        {"question": "Do you hold weekly video calls?", "answer": "No"},
    ],
    "results": [{"title": "Score", "value": 58}, {"title": "Segment", "value": "Getting There"}],
    "total_question": 2,
    "answered": 2,
    "location": {"country": "NG", "city": "Lagos"},
    "utm": {"utm_source": "linkedin", "utm_medium": "social"},
    "device": {"type": "desktop", "browser": "Firefox"},
}

# Form fields at the top level plus keys nobody documented, as a flat payload might look.
FLAT_LEAD: dict[str, Any] = {
    "calc_id": "60c0ffee1234abcd5678ef90",
    "email": "lee.park@example.com",
    "fullName": "Lee Park",
    "Which plan do you use?": "Team",
    "score": "75%",
}


@pytest.fixture(scope="module")
def lead_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(LEAD_SCHEMA_PATH.read_text(encoding="utf-8"))
    return schema


@pytest.fixture(scope="module")
def lead_validator(lead_schema: dict[str, Any]) -> Draft202012Validator:
    return Draft202012Validator(lead_schema)


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(OPENAPI_PATH.read_text(encoding="utf-8"))
    return loaded


def _subschemas(schema: dict[str, Any], where: str = "#") -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield every schema nested under `properties` or `items`, with its location."""
    for name, sub in schema.get("properties", {}).items():
        yield f"{where}/properties/{name}", sub
        yield from _subschemas(sub, f"{where}/properties/{name}")
    if isinstance(schema.get("items"), dict):
        yield f"{where}/items", schema["items"]
        yield from _subschemas(schema["items"], f"{where}/items")


def _deref(spec: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """Follow local `#/...` references inside the OpenAPI document until a real node."""
    while "$ref" in node and node["$ref"].startswith("#/"):
        target: Any = spec
        for part in node["$ref"][2:].split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        node = target
    return node


def _json_examples(media: dict[str, Any]) -> list[Any]:
    if "example" in media:
        return [media["example"]]
    return [example["value"] for example in media.get("examples", {}).values()]


def _spec_validator(spec: dict[str, Any], name: str) -> Draft202012Validator:
    """Build a validator for one of the OpenAPI document's component schemas."""
    root = {"$ref": f"#/components/schemas/{name}", "components": spec["components"]}
    return Draft202012Validator(root, format_checker=Draft202012Validator.FORMAT_CHECKER)


# --- the lead schema --------------------------------------------------------------------------


def test_lead_schema_is_a_valid_draft_2020_12_schema(lead_schema: dict[str, Any]) -> None:
    assert lead_schema["$schema"] == DRAFT_2020_12
    Draft202012Validator.check_schema(lead_schema)


def test_check_schema_would_catch_a_broken_lead_schema(lead_schema: dict[str, Any]) -> None:
    broken = copy.deepcopy(lead_schema)
    broken["properties"]["answered"]["type"] = "count"
    with pytest.raises(SchemaError):
        Draft202012Validator.check_schema(broken)


def test_lead_schema_example_is_one_full_lead(
    lead_schema: dict[str, Any], lead_validator: Draft202012Validator
) -> None:
    [example] = lead_schema["examples"]
    assert list(lead_validator.iter_errors(example)) == []
    # The example nests the form fields, so only their flat alternatives are missing.
    assert set(example) <= set(lead_schema["properties"])
    assert set(lead_schema["properties"]) - set(example) == {"email", "fullName", "phone"}
    assert example["user_info"]["email"].endswith("@example.com")


@pytest.mark.parametrize("lead", [API_STYLE_LEAD, FLAT_LEAD, {}], ids=["api", "flat", "empty"])
def test_objects_of_any_known_shape_validate(
    lead_validator: Draft202012Validator, lead: dict[str, Any]
) -> None:
    assert list(lead_validator.iter_errors(lead)) == []


@pytest.mark.parametrize("body", [[API_STYLE_LEAD], [], "LEADS", 72, None])
def test_a_body_that_is_not_an_object_is_rejected(
    lead_validator: Draft202012Validator, body: Any
) -> None:
    [error] = lead_validator.iter_errors(body)
    assert error.validator == "type"
    assert error.validator_value == "object"
    assert list(error.absolute_path) == []


def test_element_shapes_are_not_enforced(lead_validator: Draft202012Validator) -> None:
    lead = {"questions": ["How big is your team?", 3], "results": [72, "Growth Stage"]}
    assert list(lead_validator.iter_errors(lead)) == []


def test_lead_schema_requires_nothing_and_forbids_nothing(lead_schema: dict[str, Any]) -> None:
    schemas = [("#", lead_schema), *_subschemas(lead_schema)]
    for where, schema in schemas:
        assert "required" not in schema, where
        assert schema.get("additionalProperties", True) is not False, where
        assert "unevaluatedProperties" not in schema, where


def test_every_lead_field_says_how_sure_we_are(lead_schema: dict[str, Any]) -> None:
    located = list(_subschemas(lead_schema))
    assert len(located) > 20
    for where, schema in located:
        description = schema.get("description", "")
        assert description.startswith(EVIDENCE_PREFIXES), where


def test_lead_api_model_fields_are_marked_confirmed(lead_schema: dict[str, Any]) -> None:
    api_model = ["id", "calc_name", "created_at", "user_info", "location", "results", "questions"]
    api_model += ["total_question", "answered"]
    for name in api_model:
        assert lead_schema["properties"][name]["description"].startswith("Confirmed"), name


# --- the OpenAPI description ------------------------------------------------------------------


def test_openapi_file_is_valid_openapi_3_1(spec: dict[str, Any]) -> None:
    assert spec["openapi"].startswith("3.1.")
    validate(spec, base_uri=OPENAPI_PATH.as_uri(), cls=OpenAPIV31SpecValidator)


def test_openapi_validation_follows_the_lead_schema_reference(spec: dict[str, Any]) -> None:
    broken = copy.deepcopy(spec)
    broken["components"]["schemas"]["OutgrowLead"]["$ref"] = "./no-such-lead.schema.json"
    with pytest.raises(Unresolvable):
        validate(broken, base_uri=OPENAPI_PATH.as_uri(), cls=OpenAPIV31SpecValidator)


def test_json_request_body_is_the_lead_schema_file(spec: dict[str, Any]) -> None:
    reference = spec["components"]["schemas"]["OutgrowLead"]["$ref"]
    assert (OPENAPI_PATH.parent / reference).resolve() == LEAD_SCHEMA_PATH
    for path in WEBHOOK_PATHS:
        content = _deref(spec, spec["paths"][path]["post"]["requestBody"])["content"]
        assert set(content) == {"application/json", "application/x-www-form-urlencoded"}
        assert content["application/json"]["schema"] == {"$ref": "#/components/schemas/OutgrowLead"}


def test_error_code_enum_lists_every_error_code(spec: dict[str, Any]) -> None:
    enum = spec["components"]["schemas"]["ErrorCode"]["enum"]
    assert len(enum) == len(set(enum))
    assert set(enum) == ERROR_CODES


@pytest.mark.parametrize("path", WEBHOOK_PATHS)
def test_webhook_operation_answers(spec: dict[str, Any], path: str) -> None:
    operation = spec["paths"][path]["post"]
    assert operation["security"] == [{"basicAuth": []}, {"tokenQuery": []}]
    assert set(operation["responses"]) == {"202", *CODES_BY_STATUS}
    for status, codes in CODES_BY_STATUS.items():
        media = _deref(spec, operation["responses"][status])["content"]["application/json"]
        assert media["schema"] == {"$ref": "#/components/schemas/Error"}
        assert {example["error"] for example in _json_examples(media)} == codes, status


def test_webhook_description_names_the_record_headers(spec: dict[str, Any]) -> None:
    description = spec["paths"]["/webhooks/outgrow"]["post"]["description"]
    for header in ("content-type", "received-at", "source", "event-id"):
        assert f"`{header}`" in description
    assert spec["paths"]["/webhooks/outgrow/{source}"]["post"]["description"] == description


def test_security_schemes(spec: dict[str, Any]) -> None:
    schemes = spec["components"]["securitySchemes"]
    assert schemes["basicAuth"]["type"] == "http"
    assert schemes["basicAuth"]["scheme"] == "basic"
    assert (schemes["tokenQuery"]["type"], schemes["tokenQuery"]["in"]) == ("apiKey", "query")
    assert schemes["tokenQuery"]["name"] == "token"


def test_error_examples_match_the_error_schema(spec: dict[str, Any]) -> None:
    validator = _spec_validator(spec, "Error")
    checked = 0
    for name, response in spec["components"]["responses"].items():
        media = response["content"]["application/json"]
        if media["schema"] != {"$ref": "#/components/schemas/Error"}:
            continue
        for example in _json_examples(media):
            assert list(validator.iter_errors(example)) == [], name
            checked += 1
    assert checked == len(ERROR_CODES) - 1
    assert not validator.is_valid({"error": "teapot", "message": "no such code"})
    assert not validator.is_valid({"error": "draining"})


def test_accepted_example_matches_its_schema(spec: dict[str, Any]) -> None:
    validator = _spec_validator(spec, "Accepted")
    example = spec["components"]["responses"]["Accepted"]["content"]["application/json"]["example"]
    assert list(validator.iter_errors(example)) == []
    assert not validator.is_valid({**example, "event_id": "not-a-uuid"})
    assert not validator.is_valid({"status": "accepted", "event_id": example["event_id"]})


def test_error_answers_carry_their_headers(spec: dict[str, Any]) -> None:
    responses = spec["components"]["responses"]
    challenge = _deref(spec, responses["Unauthorized"]["headers"]["WWW-Authenticate"])
    assert challenge["schema"]["const"] == 'Basic realm="outgrow-braze"'
    retry_after = _deref(spec, responses["Unavailable"]["headers"]["Retry-After"])
    assert retry_after["required"] is True
    assert retry_after["schema"]["type"] == "integer"


@pytest.mark.parametrize(
    ("label", "allowed"),
    [
        ("acme", True),
        ("acme.quizzes_2024-q2", True),
        ("7", True),
        ("a" * 64, True),
        ("a" * 65, False),
        ("", False),
        ("-acme", False),
        (".hidden", False),
        ("acme/quizzes", False),
        ("acme quizzes", False),
    ],
)
def test_source_label_pattern(spec: dict[str, Any], label: str, allowed: bool) -> None:
    parameter = spec["components"]["parameters"]["Source"]
    assert (parameter["in"], parameter["required"]) == ("path", True)
    assert bool(re.search(parameter["schema"]["pattern"], label)) is allowed


def test_probes_and_metrics(spec: dict[str, Any]) -> None:
    paths = spec["paths"]
    healthz = paths["/healthz"]["get"]["responses"]
    assert healthz["200"]["content"]["application/json"]["example"] == {"status": "ok"}
    readyz = paths["/readyz"]["get"]["responses"]
    assert readyz["200"]["content"]["application/json"]["example"] == {"status": "ready"}
    not_ready = readyz["503"]["content"]["application/json"]
    assert not_ready["schema"]["required"] == ["status", "reason"]
    assert {example["status"] for example in _json_examples(not_ready)} == {"not_ready"}
    metrics = paths["/metrics"]["get"]["responses"]["200"]["content"]
    assert list(metrics) == ["text/plain; version=0.0.4"]
    for path in ("/healthz", "/readyz", "/metrics"):
        assert "security" not in paths[path]["get"]
