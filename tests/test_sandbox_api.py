"""The sandbox's Braze endpoints over real HTTP: one test per documented rule, each citing its page.

Every `/users/track` answer is checked against `schemas/braze-users-track.response.schema.json`
and for the rate-limit headers; request bodies are checked against the request schema where the
rule can be written as JSON Schema.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from connector.config import load
from outgrow_braze_dev.sandbox.app import running
from outgrow_braze_dev.sandbox.client import Answer, SandboxClient
from outgrow_braze_dev.settings import SANDBOX_DEV_API_KEY, SandboxSettings

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"
REQUEST = Draft202012Validator(
    json.loads((SCHEMAS / "braze-users-track.request.schema.json").read_text(encoding="utf-8"))
)
RESPONSE = Draft202012Validator(
    json.loads((SCHEMAS / "braze-users-track.response.schema.json").read_text(encoding="utf-8"))
)

TRACK_ONLY, EXPORT_ONLY, POWERLESS = "track-only-key", "export-only-key", "powerless-key"
NO_VALID_DATA = "Valid data must be provided in the 'attributes', 'events', or 'purchases' fields."
RATE_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")
EVERY_FIELD = ["external_id", "email", "phone", "user_aliases", "custom_attributes"]
EVERY_FIELD += ["custom_events", "purchases", "braze_id", "created_at", "first_name"]
NOW = "2026-01-05T10:00:00Z"


def sandbox_settings(**overrides: Any) -> SandboxSettings:
    """Settings for a sandbox on a free port with three limited keys beside the full one."""
    values: dict[str, Any] = {
        "sandbox_host": "127.0.0.1",
        "sandbox_port": 0,
        "sandbox_api_key": SANDBOX_DEV_API_KEY,
        "sandbox_extra_keys": f"{TRACK_ONLY}:users.track,{EXPORT_ONLY}:users.export.ids,"
        f"{POWERLESS}:",
        "sandbox_faults": "",
    }
    return load(SandboxSettings, {**values, **overrides})


@pytest.fixture(scope="module")
async def braze() -> AsyncIterator[SandboxClient]:
    async with running(sandbox_settings()) as url, SandboxClient(url) as client:
        yield client


@pytest.fixture(autouse=True)
async def fresh(braze: SandboxClient) -> None:
    await braze.reset()


async def track(
    braze: SandboxClient, body: Any, *, key: str | None = None, valid: bool | None = None
) -> Answer:
    """POST /users/track; check the schemas and the rate-limit headers."""
    if valid is not None:
        assert REQUEST.is_valid(body) is valid, [e.message for e in REQUEST.iter_errors(body)]
    answer = await braze.track(body, api_key=key)
    assert all(name in answer.headers for name in RATE_HEADERS), answer.headers
    assert isinstance(answer.body, dict)
    RESPONSE.validate(answer.body)
    return answer


async def user(braze: SandboxClient, external_id: str) -> dict[str, Any] | None:
    """The exported profile of one external id, or None."""
    answer = await braze.export_ids(
        {"external_ids": [external_id], "fields_to_export": EVERY_FIELD}
    )
    assert answer.status == 201, answer.body
    users: list[dict[str, Any]] = answer.body["users"]
    return users[0] if users else None


def attrs(**values: Any) -> dict[str, Any]:
    return {"attributes": [values]}


def event(external_id: str = "u1", **fields: Any) -> dict[str, Any]:
    return {"external_id": external_id, "name": "quiz_completed", "time": NOW, **fields}


# --------------------------------------------------------------------------- key and transport


async def test_a_request_without_a_key_gets_401(braze: SandboxClient) -> None:
    """https://www.braze.com/docs/api/errors: a missing or malformed Bearer header is a 401."""
    headers = {"Content-Type": "application/json"}
    answer = await braze.request("POST", "/users/track", b'{"attributes": []}', headers)
    assert (answer.status, answer.body) == (401, {"message": "Invalid API key"})
    assert all(name in answer.headers for name in RATE_HEADERS)


async def test_an_unknown_key_gets_401_that_echoes_it(braze: SandboxClient) -> None:
    """https://www.braze.com/docs/api/errors: an invalid API key is a 401 (Braze echoes it)."""
    answer = await track(braze, attrs(external_id="u1", a=1), key="not-a-key")
    assert answer.status == 401
    assert answer.body["message"] == "Invalid API key: not-a-key"
    assert await user(braze, "u1") is None


async def test_a_key_without_users_track_gets_403_access_denied(braze: SandboxClient) -> None:
    """https://www.braze.com/docs/api/errors: a key lacking the endpoint's permission gets
    403 "Access Denied"; /users/track needs `users.track`
    (https://www.braze.com/docs/api/basics)."""
    for key in (EXPORT_ONLY, POWERLESS):
        answer = await track(braze, attrs(external_id="u1", a=1), key=key)
        assert (answer.status, answer.body["message"]) == (403, "Access Denied")
    assert (await track(braze, attrs(external_id="u1", a=1), key=TRACK_ONLY)).status == 201


async def test_a_wrong_content_type_gets_415(braze: SandboxClient) -> None:
    """https://www.braze.com/docs/api/errors: Content-Type missing or not application/json."""
    for content_type in ("text/plain", "application/x-www-form-urlencoded", None):
        headers = braze.headers()
        if content_type is None:
            del headers["Content-Type"]
        else:
            headers["Content-Type"] = content_type
        answer = await braze.request("POST", "/users/track", b'{"attributes": []}', headers)
        assert answer.status == 415, content_type
    headers = braze.headers() | {"Content-Type": "application/json; charset=utf-8"}
    body = json.dumps(attrs(external_id="u1", a=1)).encode()
    assert (await braze.request("POST", "/users/track", body, headers)).status == 201


async def test_unparseable_json_gets_400(braze: SandboxClient) -> None:
    """https://www.braze.com/docs/api/errors: invalid JSON is a 400 "Error while parsing"."""
    for body in (b"", b"{", b'{"attributes": [,]}', b"\xff\xfe", b"{'a': 1}"):
        answer = await braze.request("POST", "/users/track", body, braze.headers())
        assert answer.status == 400, body
        assert answer.body["message"].startswith("Error while parsing request body")


async def test_a_trailing_slash_or_unknown_path_gets_404(braze: SandboxClient) -> None:
    """https://www.braze.com/docs/api/errors: 404 for an invalid URL; a trailing slash on
    /users/track/ is not the endpoint."""
    body = json.dumps(attrs(external_id="u1", a=1)).encode()
    for path in ("/users/track/", "/users/tracks", "/user/track", "/users/export/ids/"):
        assert (await braze.request("POST", path, body, braze.headers())).status == 404, path
    assert await user(braze, "u1") is None


# --------------------------------------------------------------------------- limits


async def test_more_than_75_objects_in_total_gets_400_max_input_length(
    braze: SandboxClient,
) -> None:
    """https://www.braze.com/docs/api/api_limits and .../endpoints/user_data/post_user_track:
    at most 75 objects across attributes, events and purchases together."""
    body = {
        "attributes": [{"external_id": f"u{n}", "a": n} for n in range(40)],
        "events": [event(f"u{n}") for n in range(35)],
    }
    assert (await track(braze, body, valid=True)).status == 201
    body["events"].append(event("u99"))
    answer = await track(braze, body)
    assert (answer.status, answer.body["message"]) == (400, "Max Input Length Exceeded")
    assert await user(braze, "u99") is None


async def test_legacy_limits_allow_75_objects_per_array() -> None:
    """https://www.braze.com/docs/api/api_limits: on legacy rate limits each array may hold 75
    objects (225 in all); the 76th in one array is refused."""
    settings = sandbox_settings(sandbox_legacy_object_limit=True)
    async with running(settings) as url, SandboxClient(url) as braze:
        body = {
            "attributes": [{"external_id": f"u{n}", "a": n} for n in range(75)],
            "events": [event(f"u{n}") for n in range(75)],
            "purchases": [_purchase(f"u{n}") for n in range(75)],
        }
        assert (await track(braze, body, valid=True)).status == 201
        body["purchases"].append(_purchase("u1"))
        answer = await track(braze, body, valid=False)
        assert (answer.status, answer.body["message"]) == (400, "Max Input Length Exceeded")


def _purchase(external_id: str, **fields: Any) -> dict[str, Any]:
    purchase = {"external_id": external_id, "product_id": "plan-pro", "currency": "USD"}
    return {**purchase, "price": 9.5, "time": NOW, **fields}


async def test_a_body_over_4_mb_gets_413(braze: SandboxClient) -> None:
    """https://www.braze.com/docs/api/api_limits: request bodies up to 4 MB; over it, 413."""
    filler = "x" * 200
    fields = {f"k{n}": filler for n in range(21_000)}
    body = {"attributes": [{"external_id": "u1", **fields}]}
    raw = json.dumps(body).encode()
    assert len(raw) > 4 * 1024 * 1024
    answer = await braze.request("POST", "/users/track", raw, braze.headers())
    assert answer.status == 413
    assert all(name in answer.headers for name in RATE_HEADERS)


# --------------------------------------------------------------------------- objects


async def test_an_object_with_two_primary_identifiers_is_refused_alone(
    braze: SandboxClient,
) -> None:
    """https://www.braze.com/docs/api/endpoints/user_data/post_user_track: only one primary
    identifier per object; including more rejects that object, the others still apply."""
    body = {
        "attributes": [
            {"external_id": "u1", "a": 1},
            {"external_id": "u2", "braze_id": "b2", "a": 2},
            {"external_id": "u3", "user_alias": {"alias_name": "n", "alias_label": "l"}},
        ]
    }
    assert not REQUEST.is_valid(body)
    answer = await track(braze, body)
    assert answer.status == 201
    assert answer.body["attributes_processed"] == 1
    assert [(e["input_array"], e["index"]) for e in answer.body["errors"]] == [
        ("attributes", 1),
        ("attributes", 2),
    ]
    assert await user(braze, "u1") is not None
    assert await user(braze, "u2") is None


async def test_email_identifies_a_user_when_no_primary_is_given(braze: SandboxClient) -> None:
    """https://www.braze.com/docs/api/endpoints/user_data/post_user_track: email and phone are
    used only without a primary identifier, and email wins when both are given; an unknown
    e-mail creates an e-mail-only profile."""
    body = attrs(email="Jane@Example.com", phone="+12025550100", score=1)
    assert (await track(braze, body, valid=True)).status == 201
    await track(braze, attrs(email="jane@example.com", score=2), valid=True)
    answer = await braze.export_ids(
        {"email_address": "jane@example.com", "fields_to_export": EVERY_FIELD}
    )
    [jane] = answer.body["users"]
    assert jane["custom_attributes"] == {"score": 2}
    assert "external_id" not in jane


async def test_phone_identifies_a_user_without_primary_or_email(braze: SandboxClient) -> None:
    """https://www.braze.com/docs/api/endpoints/user_data/post_user_track: phone as identifier
    works only with a valid phone number."""
    assert (await track(braze, attrs(phone="+1 (202) 555-0100", a=1), valid=True)).status == 201
    answer = await track(braze, attrs(phone="call me", a=1), valid=False)
    assert answer.status == 400
    found = await braze.export_ids({"phone": "+12025550100", "fields_to_export": EVERY_FIELD})
    assert [u["custom_attributes"] for u in found.body["users"]] == [{"a": 1}]


async def test_an_object_without_any_identifier_is_refused(braze: SandboxClient) -> None:
    """https://www.braze.com/docs/api/endpoints/user_data/post_user_track: each object must
    include one of external_id, user_alias, braze_id, email or phone."""
    body = {"attributes": [{"external_id": "u1", "a": 1}, {"first_name": "Ann"}]}
    assert not REQUEST.is_valid(body)
    answer = await track(braze, body)
    assert answer.status == 201
    assert [e["index"] for e in answer.body["errors"]] == [1]


async def test_external_id_may_be_at_most_987_bytes(braze: SandboxClient) -> None:
    """https://www.braze.com/docs/api/endpoints/user_data/post_user_track: external_id over
    987 bytes is refused (EXTERNAL_USER_ID_TOO_LARGE); bytes, not characters."""
    longest = "é" * 493 + "a"  # 987 bytes
    assert (await track(braze, attrs(external_id=longest, a=1))).status == 201
    answer = await track(braze, attrs(external_id="é" * 494, a=1))
    assert answer.status == 400
    assert "987" in answer.body["errors"][0]["type"]


async def test_an_invalid_email_is_refused(braze: SandboxClient) -> None:
    """https://www.braze.com/docs/api/endpoints/user_data/post_user_track: EMAIL_BAD_FORMAT,
    whether the e-mail identifies the user or is an attribute of one."""
    for body in (attrs(email="not-an-email", a=1), attrs(external_id="u1", email="a@b")):
        answer = await track(braze, body, valid=False)
        assert answer.status == 400
        assert answer.body["message"] == NO_VALID_DATA
        assert "e-mail" in answer.body["errors"][0]["type"]


async def test_attribute_names_may_have_at_most_255_characters(braze: SandboxClient) -> None:
    """https://www.braze.com/docs/user_guide/data/custom_data/custom_attributes: keys of at
    most 255 characters."""
    assert (await track(braze, attrs(external_id="u1", **{"k" * 255: 1}), valid=True)).status == 201
    answer = await track(braze, attrs(external_id="u1", **{"k" * 256: 1}), valid=False)
    assert answer.status == 400


async def test_string_values_may_have_at_most_255_characters(braze: SandboxClient) -> None:
    """https://www.braze.com/docs/user_guide/data/custom_data/custom_attributes: string values
    of at most 255 characters; a longer update does not apply."""
    await track(braze, attrs(external_id="u1", note="x" * 255), valid=True)
    answer = await track(braze, attrs(external_id="u1", note="y" * 256), valid=False)
    assert answer.status == 400
    profile = await user(braze, "u1")
    assert profile is not None
    assert profile["custom_attributes"] == {"note": "x" * 255}


async def test_an_event_needs_a_name_and_a_time(braze: SandboxClient) -> None:
    """https://www.braze.com/docs/api/objects_filters/event_object: `name` and `time` are
    required; time is ISO 8601 (or yyyy-MM-dd'T'HH:mm:ss:SSSZ)."""
    good = [event(), event(time="2026-01-05T10:00:00:123Z"), event(time="2026-01-05T10:00:00")]
    bad = [{"external_id": "u1", "time": NOW}, {"external_id": "u1", "name": "quiz"}]
    bad.append(event(time="yesterday"))
    answer = await track(braze, {"events": good + bad})
    assert answer.status == 201
    assert answer.body["events_processed"] == 3
    assert [e["index"] for e in answer.body["errors"]] == [3, 4, 5]
    assert REQUEST.is_valid({"events": good})
    assert not any(REQUEST.is_valid({"events": [wrong]}) for wrong in bad[:2])


async def test_reserved_property_names_are_refused(braze: SandboxClient) -> None:
    """https://www.braze.com/docs/api/objects_filters/event_object: `time` and `event_name` are
    reserved; https://www.braze.com/docs/api/objects_filters/purchase_object adds product_id,
    quantity, price and currency."""
    events = [event(properties={"time": "x"}), event(properties={"event_name": "x"})]
    purchases = [_purchase("u1", properties={"price": 1}), _purchase("u1", properties={"q": 1})]
    body = {"events": events, "purchases": purchases}
    assert not REQUEST.is_valid(body)
    answer = await track(braze, body)
    assert answer.status == 201
    errors = [(e["input_array"], e["index"]) for e in answer.body["errors"]]
    assert errors == [("events", 0), ("events", 1), ("purchases", 0)]


async def test_property_names_must_not_start_with_a_dollar(braze: SandboxClient) -> None:
    """https://www.braze.com/docs/api/objects_filters/event_object: property names are
    non-empty, at most 255 characters, with no leading $."""
    bad = [event(properties={"$score": 1}), event(properties={"": 1})]
    bad.append(event(properties={"p" * 256: 1}))
    answer = await track(braze, {"events": [event(properties={"score$": 1}), *bad]})
    assert answer.body["events_processed"] == 1
    assert [e["index"] for e in answer.body["errors"]] == [1, 2, 3]
    assert not any(REQUEST.is_valid({"events": [wrong]}) for wrong in bad)


async def test_a_purchase_needs_product_currency_price_and_time(braze: SandboxClient) -> None:
    """https://www.braze.com/docs/api/objects_filters/purchase_object: product_id, currency
    (ISO 4217), price and time are required; quantity is at most 100."""
    good = _purchase("u1", quantity=100)
    bad = [
        {k: v for k, v in _purchase("u1").items() if k != missing}
        for missing in ("product_id", "currency", "price", "time")
    ]
    bad += [_purchase("u1", currency="usd"), _purchase("u1", quantity=101)]
    answer = await track(braze, {"purchases": [good, *bad]})
    assert answer.body["purchases_processed"] == 1
    assert len(answer.body["errors"]) == len(bad)
    assert REQUEST.is_valid({"purchases": [good]})
    assert not any(REQUEST.is_valid({"purchases": [wrong]}) for wrong in bad)
    profile = await user(braze, "u1")
    assert profile is not None
    assert [(p["name"], p["count"]) for p in profile["purchases"]] == [("plan-pro", 1)]


async def test_update_only_objects_for_unknown_users_change_nothing(
    braze: SandboxClient,
) -> None:
    """https://www.braze.com/docs/api/objects_filters/user_attributes_object: with
    `_update_existing_only: true` Braze updates existing users only; without it an unknown
    external_id creates a profile."""
    body = {
        "attributes": [{"external_id": "ghost", "_update_existing_only": True, "a": 1}],
        "events": [event("ghost", _update_existing_only=True)],
    }
    answer = await track(braze, body, valid=True)
    assert answer.status == 201
    assert await user(braze, "ghost") is None
    await track(braze, attrs(external_id="ghost", a=1))
    await track(braze, attrs(external_id="ghost", _update_existing_only=True, a=2))
    profile = await user(braze, "ghost")
    assert profile is not None
    assert profile["custom_attributes"] == {"a": 2}


async def test_an_alias_creates_a_profile_only_when_update_only_is_false(
    braze: SandboxClient,
) -> None:
    """https://www.braze.com/docs/api/objects_filters/user_attributes_object: with a user_alias
    "Update Only" defaults to true, so only `_update_existing_only: false` creates an alias-only
    profile; events by alias are always update-only
    (https://www.braze.com/docs/api/objects_filters/event_object)."""
    alias = {"alias_name": "jane@example.com", "alias_label": "email"}
    await track(braze, {"attributes": [{"user_alias": alias, "a": 1}]}, valid=True)
    await track(braze, {"events": [{"user_alias": alias, "name": "quiz", "time": NOW}]})
    query = {"user_aliases": [alias], "fields_to_export": EVERY_FIELD}
    assert (await braze.export_ids(query)).body["users"] == []
    body = {"attributes": [{"user_alias": alias, "_update_existing_only": False, "a": 2}]}
    await track(braze, body, valid=True)
    await track(braze, {"events": [{"user_alias": alias, "name": "quiz", "time": NOW}]})
    [profile] = (await braze.export_ids(query)).body["users"]
    assert profile["user_aliases"] == [alias]
    assert profile["custom_attributes"] == {"a": 2}
    assert [e["count"] for e in profile["custom_events"]] == [1]


async def test_partial_success_is_201_with_errors_by_array_and_index(
    braze: SandboxClient,
) -> None:
    """https://www.braze.com/docs/api/errors and .../endpoints/user_data/post_user_track:
    `message: success` with `errors` [{type, input_array, index}] while the valid objects are
    applied; the index counts within its own array."""
    body = {
        "attributes": [{"external_id": "u1", "a": 1}, {"external_id": "u2", "email": "nope"}],
        "events": [{"external_id": "u1", "time": NOW}, event("u1")],
    }
    answer = await track(braze, body)
    assert answer.status == 201
    assert answer.body["message"] == "success"
    assert (answer.body["attributes_processed"], answer.body["events_processed"]) == (1, 1)
    assert [(e["input_array"], e["index"]) for e in answer.body["errors"]] == [
        ("attributes", 1),
        ("events", 0),
    ]
    assert all(isinstance(e["type"], str) and e["type"] for e in answer.body["errors"])
    assert await user(braze, "u1") is not None


async def test_no_valid_object_at_all_gets_400_valid_data_must_be_provided(
    braze: SandboxClient,
) -> None:
    """https://www.braze.com/docs/api/errors: a fatal error is `{"message": <fatal>,
    "errors": [...]}`; with nothing valid to apply Braze says valid data must be provided."""
    for body in ({}, {"attributes": []}, {"attributes": [{"a": 1}]}, [], {"partner": "x"}):
        answer = await track(braze, body)
        assert (answer.status, answer.body["message"]) == (400, NO_VALID_DATA), body
    answer = await track(braze, {"attributes": [{"a": 1}], "events": [{"name": "x"}]})
    assert [e["input_array"] for e in answer.body["errors"]] == ["attributes", "events"]


async def test_success_counts_each_array_sent(braze: SandboxClient) -> None:
    """https://www.braze.com/docs/api/endpoints/user_data/post_user_track: 201 with
    `message: success` and attributes/events/purchases_processed (for the arrays sent)."""
    body = {
        "attributes": [{"external_id": "u1", "a": 1}, {"external_id": "u2", "a": 2}],
        "events": [event("u1")],
        "purchases": [_purchase("u2")],
    }
    answer = await track(braze, body, valid=True)
    assert answer.status == 201
    assert answer.body == {
        "message": "success",
        "attributes_processed": 2,
        "events_processed": 1,
        "purchases_processed": 1,
    }
    only_events = await track(braze, {"events": [event("u1")]})
    assert only_events.body == {"message": "success", "events_processed": 1}


# --------------------------------------------------------------------------- profile updates


async def test_attributes_are_set_and_null_removes_them(braze: SandboxClient) -> None:
    """https://www.braze.com/docs/api/objects_filters/user_attributes_object: values are set
    as sent; setting an attribute to null removes it."""
    await track(braze, attrs(external_id="u1", first_name="Ann", score=7, tier="gold"))
    await track(braze, attrs(external_id="u1", first_name=None, tier=None, score=8))
    profile = await user(braze, "u1")
    assert profile is not None
    assert profile["custom_attributes"] == {"score": 8}
    assert "first_name" not in profile


async def test_inc_adds_to_a_number(braze: SandboxClient) -> None:
    """https://www.braze.com/docs/api/objects_filters/user_attributes_object: `{"inc": n}`
    increments an integer attribute (from 0 when it is missing)."""
    for step in (1, 1, 5, -2):
        await track(braze, attrs(external_id="u1", quizzes={"inc": step}), valid=True)
    profile = await user(braze, "u1")
    assert profile is not None
    assert profile["custom_attributes"] == {"quizzes": 5}


async def test_arrays_take_add_and_remove(braze: SandboxClient) -> None:
    """https://www.braze.com/docs/api/objects_filters/user_attributes_object: arrays hold
    unique values; `add` appends (an existing value moves to the end), `remove` deletes."""
    await track(braze, attrs(external_id="u1", quizzes=["a", "b", "a"]), valid=True)
    await track(braze, attrs(external_id="u1", quizzes={"add": ["c", "a"]}), valid=True)
    await track(braze, attrs(external_id="u1", quizzes={"remove": ["b"]}), valid=True)
    profile = await user(braze, "u1")
    assert profile is not None
    assert profile["custom_attributes"] == {"quizzes": ["c", "a"]}


async def test_nested_objects_merge_only_with_merge_objects(braze: SandboxClient) -> None:
    """https://www.braze.com/docs/user_guide/data/custom_data/custom_attributes/
    nested_custom_attribute_support: an object is overwritten unless `_merge_objects: true`."""
    await track(braze, attrs(external_id="u1", quiz={"score": 7, "answers": {"q1": "yes"}}))
    body = attrs(external_id="u1", _merge_objects=True, quiz={"answers": {"q2": "no"}})
    await track(braze, body, valid=True)
    profile = await user(braze, "u1")
    assert profile is not None
    assert profile["custom_attributes"]["quiz"] == {
        "score": 7,
        "answers": {"q1": "yes", "q2": "no"},
    }
    await track(braze, attrs(external_id="u1", quiz={"score": 9}))
    profile = await user(braze, "u1")
    assert profile is not None
    assert profile["custom_attributes"]["quiz"] == {"score": 9}


async def test_invalid_nested_objects_are_refused(braze: SandboxClient) -> None:
    """https://www.braze.com/docs/user_guide/data/custom_data/custom_attributes/
    nested_custom_attribute_support: keys without spaces, dates as {"$time": ...}, no nulls."""
    good = attrs(external_id="u1", quiz={"taken": {"$time": "2026-01-05"}, "tags": ["a"]})
    assert (await track(braze, good, valid=True)).status == 201
    for nested in ({"a key": 1}, {"taken": {"$time": None}}, {"a": None}, {"$x": 1}):
        body = attrs(external_id="u1", quiz=nested)
        assert (await track(braze, body)).status == 400, nested


async def test_events_are_recorded_with_name_time_and_count(braze: SandboxClient) -> None:
    """https://www.braze.com/docs/api/objects_filters/event_object: every event counts (no
    dedup); a time in the future is recorded as now. Export shows count, first and last
    (https://www.braze.com/docs/api/endpoints/export/user_data/post_users_identifier)."""
    times = ["2026-01-05T10:00:00Z", "2026-01-03T08:30:00.250+00:00", "2026-01-05T10:00:00Z"]
    await track(braze, {"events": [event(time=t, properties={"score": 1}) for t in times]})
    await track(braze, {"events": [event(time="2999-01-01T00:00:00Z")]})
    profile = await user(braze, "u1")
    assert profile is not None
    [seen] = profile["custom_events"]
    assert (seen["name"], seen["count"], seen["first"]) == (
        "quiz_completed",
        4,
        times[1][:23] + "Z",
    )
    assert seen["last"] < "2999"
    assert seen["last"][:4] == time.strftime("%Y", time.gmtime())


# --------------------------------------------------------------------------- export


async def test_export_takes_at_most_50_external_ids_and_aliases(braze: SandboxClient) -> None:
    """https://www.braze.com/docs/api/endpoints/export/user_data/post_users_identifier: up to
    50 external_ids or user_aliases per request."""
    ids = [f"u{n}" for n in range(49)]
    alias = {"alias_name": "n", "alias_label": "l"}
    query = {"external_ids": ids, "user_aliases": [alias], "fields_to_export": ["external_id"]}
    assert (await braze.export_ids(query)).status == 201
    query["external_ids"] = [*ids, "u50"]
    answer = await braze.export_ids(query)
    assert answer.status == 400
    assert "max number of external_ids and aliases" in answer.body["message"]


async def test_export_takes_one_email_phone_or_device(braze: SandboxClient) -> None:
    """https://www.braze.com/docs/api/endpoints/export/user_data/post_users_identifier: only
    one of device_id, email_address and phone per request."""
    both = {"email_address": "a@example.com", "phone": "+12025550100"}
    answer = await braze.export_ids({**both, "fields_to_export": ["email"]})
    assert answer.status == 400
    one = {"email_address": "a@example.com", "fields_to_export": ["email"]}
    assert (await braze.export_ids(one)).status == 201


async def test_export_returns_the_requested_fields_and_invalid_ids(braze: SandboxClient) -> None:
    """https://www.braze.com/docs/api/endpoints/export/user_data/post_users_identifier:
    `{"message": "success", "users": [...], "invalid_user_ids": [...]}`, with only the fields
    named in fields_to_export (required of new workspaces)."""
    await track(braze, {"attributes": [{"external_id": "u1", "email": "a@example.com", "a": 1}]})
    await track(braze, {"events": [event("u1")]})
    query = {"external_ids": ["u1", "nobody"], "fields_to_export": ["custom_attributes", "email"]}
    answer = await braze.export_ids(query)
    assert answer.status == 201
    assert answer.body == {
        "message": "success",
        "users": [{"custom_attributes": {"a": 1}, "email": "a@example.com"}],
        "invalid_user_ids": ["nobody"],
    }
    answer = await braze.export_ids({"external_ids": ["u1"]})
    assert answer.status == 400
    assert "fields_to_export" in answer.body["message"]


async def test_export_needs_the_users_export_ids_permission(braze: SandboxClient) -> None:
    """https://www.braze.com/docs/api/endpoints/export/user_data/post_users_identifier: the key
    needs `users.export.ids`; without it, 403 Access Denied (https://www.braze.com/docs/api/errors)."""
    query = {"external_ids": ["u1"], "fields_to_export": ["external_id"]}
    answer = await braze.export_ids(query, api_key=TRACK_ONLY)
    assert (answer.status, answer.body["message"]) == (403, "Access Denied")
    assert (await braze.export_ids(query, api_key=EXPORT_ONLY)).status == 201


# --------------------------------------------------------------------------- rate limits


async def test_every_track_answer_carries_the_rate_limit_headers(braze: SandboxClient) -> None:
    """https://www.braze.com/docs/api/api_limits: X-RateLimit-Limit, -Remaining and -Reset (UTC
    epoch seconds) on every answer; by default 3,000 requests per 3 seconds."""
    for body, key in ((attrs(external_id="u1", a=1), None), ({}, None), ({}, "bad-key")):
        answer = await track(braze, body, key=key)
        assert int(answer.headers["X-RateLimit-Limit"]) == 3_000
        assert 0 <= int(answer.headers["X-RateLimit-Remaining"]) < 3_000
        reset = int(answer.headers["X-RateLimit-Reset"])
        assert time.time() <= reset <= time.time() + 3 + 1
    settings = sandbox_settings(sandbox_track_rate_window_s=3600)
    async with running(settings) as url, SandboxClient(url) as hourly:
        seen = []
        for body, key in ((attrs(external_id="u1", a=1), None), ({}, None), ({}, "bad-key")):
            seen.append(int((await track(hourly, body, key=key)).headers["X-RateLimit-Remaining"]))
    # Every answer spends one, even a 400; a refused key spends nothing of the workspace's.
    assert seen == [2_999, 2_998, 2_998]


async def test_over_budget_requests_get_429_until_the_window_resets() -> None:
    """https://www.braze.com/docs/api/api_limits: a budget per workspace and window; over it,
    429 with X-RateLimit-Remaining 0 and X-RateLimit-Reset in epoch seconds."""
    settings = sandbox_settings(sandbox_track_rate_limit=3, sandbox_track_rate_window_s=3600)
    async with running(settings) as url, SandboxClient(url) as braze:
        statuses = []
        for key in (None, TRACK_ONLY, None, TRACK_ONLY):  # keys share the workspace budget
            statuses.append((await track(braze, attrs(external_id="u1", a=1), key=key)).status)
        answer = await track(braze, attrs(external_id="u2", a=1))
        assert statuses == [201, 201, 201, 429]
        assert answer.status == 429
        assert answer.headers["X-RateLimit-Remaining"] == "0"
        reset = int(answer.headers["X-RateLimit-Reset"])
        assert reset % 3600 == 0 and 0 < reset - time.time() <= 3600
        assert await user(braze, "u2") is None


async def test_export_has_its_own_budget() -> None:
    """https://www.braze.com/docs/api/endpoints/export/user_data/post_users_identifier: 250
    requests a minute by default, apart from /users/track's budget."""
    settings = sandbox_settings(sandbox_export_rate_limit=2, sandbox_export_rate_window_s=3600)
    async with running(settings) as url, SandboxClient(url) as braze:
        query = {"external_ids": ["u1"], "fields_to_export": ["external_id"]}
        statuses = [(await braze.export_ids(query)).status for _ in range(3)]
        assert statuses == [201, 201, 429]
        assert (await track(braze, attrs(external_id="u1", a=1))).status == 201
    default = sandbox_settings()
    assert (default.sandbox_export_rate_limit, default.sandbox_export_rate_window_s) == (250, 60)
