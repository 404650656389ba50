"""The JSON Schemas of `/users/track` bodies: valid draft 2020-12, and right about examples."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"
NAMES = ["braze-users-track.request.schema.json", "braze-users-track.response.schema.json"]


def _schema(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SCHEMAS / name).read_text(encoding="utf-8"))
    return loaded


@pytest.mark.parametrize("name", NAMES)
def test_schemas_are_valid_draft_2020_12(name: str) -> None:
    schema = _schema(name)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)
    assert "braze.com/docs" in schema["description"]


REQUEST = Draft202012Validator(_schema(NAMES[0]))
RESPONSE = Draft202012Validator(_schema(NAMES[1]))

# A request in the shape the Outgrow connector sends: one user's quiz answers and one event.
QUIZ = {
    "attributes": [
        {
            "external_id": "user-1",
            "email": "jane@example.com",
            "first_name": "Jane",
            "outgrow_quiz_score": 72,
            "outgrow_segment": "Growth Stage",
            "outgrow_quizzes": {"add": ["savings-plan"]},
            "outgrow_last_quiz": {"name": "Savings plan", "taken": {"$time": "2026-01-05"}},
        }
    ],
    "events": [
        {
            "external_id": "user-1",
            "name": "outgrow_submission",
            "time": "2026-01-05T10:00:00Z",
            "properties": {"quiz": "savings-plan", "score": 72},
        }
    ],
}


def test_a_quiz_request_is_valid() -> None:
    assert list(REQUEST.iter_errors(QUIZ)) == []


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"attributes": {"external_id": "u1"}},
        {"attributes": [{"external_id": "u1"}] * 76},
        {
            "attributes": [
                {"external_id": "u1", "user_alias": {"alias_name": "a", "alias_label": "b"}}
            ]
        },
        {"attributes": [{"first_name": "no identifier"}]},
        {"attributes": [{"external_id": "u1", "email_subscribe": "yes"}]},
        {"events": [{"external_id": "u1", "name": "e"}]},
        {
            "events": [
                {"external_id": "u1", "name": "e", "time": "2026-01-05", "properties": {"$p": 1}}
            ]
        },
        {"purchases": [{"external_id": "u1", "product_id": "p", "price": 1, "time": "2026-01-05"}]},
    ],
)
def test_requests_braze_refuses_are_invalid(body: Any) -> None:
    assert not REQUEST.is_valid(body)


@pytest.mark.parametrize(
    "body",
    [
        {"message": "success", "attributes_processed": 1, "events_processed": 1},
        {"message": "success", "errors": [{"type": "bad", "input_array": "events", "index": 0}]},
        {"message": "Max Input Length Exceeded"},
        {
            "message": "no data",
            "errors": [{"type": "bad", "input_array": "attributes", "index": 2}],
        },
    ],
)
def test_answers_braze_gives_are_valid(body: Any) -> None:
    assert list(RESPONSE.iter_errors(body)) == []


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"message": "success", "attributes_processed": -1},
        {"message": "success", "errors": []},
        {"message": "success", "errors": [{"type": "bad", "input_array": "users", "index": 0}]},
        {"message": "success", "extra": 1},
    ],
)
def test_answers_braze_never_gives_are_invalid(body: Any) -> None:
    assert not RESPONSE.is_valid(body)
