"""`/users/export/ids`: reading the request and rendering users."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from outgrow_braze_dev.sandbox.contract import ObjectLimit, check_track
from outgrow_braze_dev.sandbox.errors import Refusal
from outgrow_braze_dev.sandbox.export import ExportQuery, export, parse_export, render_user
from outgrow_braze_dev.sandbox.store import ProfileStore

FIELDS = ["external_id", "custom_attributes"]


def test_parse_export_reads_every_identifier() -> None:
    query = parse_export(
        {
            "external_ids": ["u1", "u2"],
            "user_aliases": [{"alias_name": "n", "alias_label": "l"}],
            "braze_id": "b1",
            "phone": "+12025550100",
            "fields_to_export": FIELDS,
        }
    )
    assert query == ExportQuery(
        external_ids=("u1", "u2"),
        aliases=(("l", "n"),),
        braze_id="b1",
        phone="+12025550100",
        fields=frozenset(FIELDS),
    )


@pytest.mark.parametrize(
    ("document", "words"),
    [
        ([], "JSON object"),
        ({"fields_to_export": FIELDS}, "at least one user"),
        ({"external_ids": ["u"] * 51, "fields_to_export": FIELDS}, "max number"),
        ({"external_ids": "u1", "fields_to_export": FIELDS}, "external_ids"),
        ({"external_ids": [""], "fields_to_export": FIELDS}, "external_ids"),
        ({"user_aliases": [{"alias_name": "n"}], "fields_to_export": FIELDS}, "user_aliases"),
        ({"device_id": "d", "phone": "1", "fields_to_export": FIELDS}, "only one"),
        ({"braze_id": 7, "fields_to_export": FIELDS}, "braze_id"),
        ({"external_ids": ["u1"]}, "required"),
        ({"external_ids": ["u1"], "fields_to_export": "email"}, "array"),
        ({"external_ids": ["u1"], "fields_to_export": ["shoe_size"]}, "shoe_size"),
    ],
)
def test_parse_export_refuses_what_braze_refuses(document: Any, words: str) -> None:
    with pytest.raises(Refusal, match=words) as refused:
        parse_export(document)
    assert refused.value.status == 400


def _store() -> ProfileStore:
    store = ProfileStore(clock=lambda: datetime(2026, 1, 1, tzinfo=UTC))
    body = {
        "attributes": [
            {"external_id": "u1", "email": "a@x.io", "first_name": "Ann", "score": 7},
            {"user_alias": {"alias_name": "n", "alias_label": "l"}, "_update_existing_only": False},
            {"email": "a@x.io", "from_email": True},
        ],
        "events": [{"external_id": "u1", "name": "quiz", "time": "2026-01-01T00:00:00Z"}],
    }
    store.apply(check_track(body, ObjectLimit()))
    return store


def test_export_finds_users_once_and_lists_unknown_ids() -> None:
    store = _store()
    query = parse_export(
        {
            "external_ids": ["u1", "u1", "ghost"],
            "user_aliases": [{"alias_name": "n", "alias_label": "l"}],
            "device_id": "d1",
            "fields_to_export": ["external_id", "user_aliases"],
        }
    )
    body = export(store, query)
    assert body["users"] == [
        {"external_id": "u1"},
        {"user_aliases": [{"alias_name": "n", "alias_label": "l"}]},
    ]
    assert body["invalid_user_ids"] == ["ghost", "d1"]


def test_export_by_email_returns_every_profile_with_it() -> None:
    query = parse_export({"email_address": "A@x.io", "fields_to_export": ["custom_attributes"]})
    body = export(_store(), query)
    # The e-mail-only write went to the profile with an external id (Braze's preference).
    assert body == {
        "message": "success",
        "users": [{"custom_attributes": {"score": 7, "from_email": True}}],
    }


def test_render_user_keeps_only_known_requested_fields() -> None:
    profile = _store().by_external_id("u1")
    assert profile is not None
    every = frozenset({"created_at", "braze_id", "first_name", "email", "custom_events", "apps"})
    rendered = render_user(profile, every)
    assert rendered == {
        "created_at": "2026-01-01T00:00:00.000Z",
        "braze_id": profile.braze_id,
        "first_name": "Ann",
        "email": "a@x.io",
        "custom_events": [
            {
                "name": "quiz",
                "first": "2026-01-01T00:00:00.000Z",
                "last": "2026-01-01T00:00:00.000Z",
                "count": 1,
            }
        ],
    }
