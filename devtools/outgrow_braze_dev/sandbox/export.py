"""`POST /users/export/ids`: which users a request names, and how each one is exported.

The rules are those of https://www.braze.com/docs/api/endpoints/export/user_data/post_users_identifier
(EXPORT_DOC below).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from outgrow_braze_dev.sandbox.errors import Refusal
from outgrow_braze_dev.sandbox.store import Profile, ProfileStore, iso

EXPORT_DOC = "https://www.braze.com/docs/api/endpoints/export/user_data/post_users_identifier"
MAX_IDS = 50  # EXPORT_DOC: external_ids and user_aliases together
SINGLE_IDS = ("device_id", "email_address", "phone")  # EXPORT_DOC: only one of these per request
# Braze's own message for more than 50 ids (https://www.braze.com/docs/api/errors).
TOO_MANY_IDS = "The max number of external_ids and aliases per request was exceeded"

# EXPORT_DOC's table of fields. The sandbox fills the ones it keeps; a field missing from an
# exported user means null or empty, as the page says.
EXPORTABLE = frozenset(
    {
        "apps",
        "attributed_ad",
        "attributed_adgroup",
        "attributed_campaign",
        "attributed_source",
        "braze_id",
        "campaigns_received",
        "canvases_received",
        "cards_clicked",
        "country",
        "created_at",
        "custom_attributes",
        "custom_events",
        "devices",
        "dob",
        "email",
        "email_subscribe",
        "external_id",
        "first_name",
        "gender",
        "home_city",
        "language",
        "last_coordinates",
        "last_name",
        "phone",
        "purchases",
        "push_subscribe",
        "push_tokens",
        "random_bucket",
        "time_zone",
        "total_revenue",
        "uninstalled_at",
        "user_aliases",
    }
)


@dataclass(frozen=True)
class ExportQuery:
    """The users one export request names, and the fields it wants."""

    external_ids: tuple[str, ...] = ()
    aliases: tuple[tuple[str, str], ...] = ()
    braze_id: str | None = None
    email: str | None = None
    phone: str | None = None
    device_id: str | None = None
    fields: frozenset[str] = frozenset()


def parse_export(document: Any) -> ExportQuery:
    """Check an export body; raise Refusal(400) where Braze would refuse it."""
    if not isinstance(document, dict):
        raise Refusal(400, "the body must be a JSON object")
    external_ids = _strings(document, "external_ids")
    aliases = _aliases(document.get("user_aliases"))
    if len(external_ids) + len(aliases) > MAX_IDS:
        raise Refusal(400, TOO_MANY_IDS)
    singles = {name: _optional_string(document, name) for name in (*SINGLE_IDS, "braze_id")}
    if sum(singles[name] is not None for name in SINGLE_IDS) > 1:
        raise Refusal(400, "give only one of 'device_id', 'email_address' and 'phone'")
    if not external_ids and not aliases and all(value is None for value in singles.values()):
        raise Refusal(400, "name at least one user to export")
    return ExportQuery(
        external_ids=external_ids,
        aliases=aliases,
        braze_id=singles["braze_id"],
        email=singles["email_address"],
        phone=singles["phone"],
        device_id=singles["device_id"],
        fields=_fields(document.get("fields_to_export")),
    )


def _strings(document: dict[str, Any], name: str) -> tuple[str, ...]:
    values = document.get(name)
    if values is None:
        return ()
    if not isinstance(values, list) or not all(isinstance(v, str) and v for v in values):
        raise Refusal(400, f"'{name}' must be an array of non-empty strings")
    return tuple(values)


def _aliases(values: Any) -> tuple[tuple[str, str], ...]:
    if values is None:
        return ()
    if not isinstance(values, list) or not all(_is_alias(value) for value in values):
        raise Refusal(400, "'user_aliases' must be an array of {alias_name, alias_label} objects")
    return tuple((value["alias_label"], value["alias_name"]) for value in values)


def _is_alias(value: Any) -> bool:
    return isinstance(value, dict) and all(
        isinstance(value.get(part), str) and value[part] for part in ("alias_name", "alias_label")
    )


def _optional_string(document: dict[str, Any], name: str) -> str | None:
    value = document.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise Refusal(400, f"'{name}' must be a non-empty string")
    return value


def _fields(values: Any) -> frozenset[str]:
    """EXPORT_DOC: `fields_to_export` is required of workspaces onboarded since 2024-08-22."""
    if values is None:
        raise Refusal(400, "'fields_to_export' is required")
    if not isinstance(values, list) or not all(isinstance(value, str) for value in values):
        raise Refusal(400, "'fields_to_export' must be an array of field names")
    unknown = sorted(set(values) - EXPORTABLE)
    if unknown:
        raise Refusal(400, f"'fields_to_export' names unknown fields: {', '.join(unknown[:5])}")
    return frozenset(values)


# --------------------------------------------------------------------------- answering


def export(store: ProfileStore, query: ExportQuery) -> dict[str, Any]:
    """The success body: the users found, and the identifiers that matched nobody."""
    found: dict[str, Profile] = {}
    invalid: list[str] = []
    for label, profiles in _lookups(store, query):
        if not profiles:
            invalid.append(label)
        for profile in profiles:
            found.setdefault(profile.braze_id, profile)
    body: dict[str, Any] = {
        "message": "success",
        "users": [render_user(profile, query.fields) for profile in found.values()],
    }
    if invalid:
        body["invalid_user_ids"] = invalid
    return body


def _lookups(store: ProfileStore, query: ExportQuery) -> Iterator[tuple[str, list[Profile]]]:
    for external_id in query.external_ids:
        yield external_id, _listed(store.by_external_id(external_id))
    for label, name in query.aliases:
        yield name, _listed(store.by_alias(label, name))
    if query.braze_id is not None:
        yield query.braze_id, _listed(store.by_braze_id(query.braze_id))
    if query.email is not None:
        yield query.email, store.by_contact("email", query.email)
    if query.phone is not None:
        yield query.phone, store.by_contact("phone", query.phone)
    if query.device_id is not None:
        yield query.device_id, []  # the sandbox has no devices


def _listed(profile: Profile | None) -> list[Profile]:
    return [profile] if profile is not None else []


def render_user(profile: Profile, fields: frozenset[str]) -> dict[str, Any]:
    """One exported user with the requested fields the sandbox knows; the rest left out."""
    everything: dict[str, Any] = {
        "created_at": iso(profile.created_at),
        "braze_id": profile.braze_id,
        "external_id": profile.external_id,
        "user_aliases": [
            {"alias_name": name, "alias_label": label} for label, name in profile.aliases.items()
        ],
        "custom_attributes": dict(profile.custom),
        "custom_events": [seen.as_dict(name) for name, seen in profile.events.items()],
        "purchases": [seen.as_dict(name) for name, seen in profile.purchases.items()],
        **profile.fields,
    }
    return {
        name: value
        for name, value in everything.items()
        if name in fields and value is not None and value != [] and value != {}
    }
