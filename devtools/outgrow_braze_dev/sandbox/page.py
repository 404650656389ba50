"""The page at `GET /`: the latest profiles, their attributes and recent events, for a person.

It is the sandbox's version of "check the user profile" in Braze's dashboard.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from html import escape
from typing import Any

import orjson

from outgrow_braze_dev.sandbox.store import Profile, iso

REFRESH_S = 3

_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }
section { border: 1px solid #ccc; border-radius: 6px; padding: 0.6em 1em; margin: 1em 0; }
h2 { font-size: 1em; margin: 0 0 0.4em; }
table { border-collapse: collapse; margin: 0.3em 0; }
td, th { text-align: left; padding: 0.1em 0.8em 0.1em 0; vertical-align: top; }
code { font-size: 0.95em; }
.muted { color: #777; }
"""


def render(profiles: Iterable[Profile], total: int) -> str:
    """The whole page for these profiles (already ordered), out of `total` held."""
    shown = [_profile(profile) for profile in profiles]
    empty = '<p class="muted">No profile yet: send a request to POST /users/track.</p>'
    return "\n".join(
        [
            "<!doctype html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f'<meta http-equiv="refresh" content="{REFRESH_S}">',
            "<title>Braze sandbox</title>",
            f"<style>{_STYLE}</style></head><body>",
            "<h1>Braze sandbox</h1>",
            f'<p class="muted">{total} profiles; the {len(shown)} updated last are shown. '
            f"This page refreshes every {REFRESH_S} s.</p>",
            *(shown or [empty]),
            "</body></html>",
        ]
    )


def _profile(profile: Profile) -> str:
    parts = [
        f"<section><h2>{escape(_title(profile))}</h2>",
        _table("Profile", _identifiers(profile) | profile.fields),
        _table("Custom attributes", profile.custom),
        _events(profile),
        "</section>",
    ]
    return "".join(part for part in parts if part)


def _title(profile: Profile) -> str:
    if profile.external_id is not None:
        return f"external_id {profile.external_id}"
    if profile.aliases:
        label, name = next(iter(profile.aliases.items()))
        return f"alias {label}: {name}"
    contact = profile.fields.get("email") or profile.fields.get("phone")
    return str(contact) if contact else f"braze_id {profile.braze_id}"


def _identifiers(profile: Profile) -> dict[str, Any]:
    found: dict[str, Any] = {"braze_id": profile.braze_id, "created_at": iso(profile.created_at)}
    if profile.aliases:
        found["user_aliases"] = profile.aliases
    return found


def _table(caption: str, values: Mapping[str, Any]) -> str:
    if not values:
        return ""
    rows = "".join(
        f"<tr><th>{escape(str(name))}</th><td><code>{escape(_text(value))}</code></td></tr>"
        for name, value in values.items()
    )
    return f"<table><caption>{escape(caption)}</caption>{rows}</table>"


def _events(profile: Profile) -> str:
    if not profile.recent:
        return ""
    rows = "".join(
        f"<tr><td>{escape(iso(event.time))}</td><th>{escape(event.name)}</th>"
        f"<td><code>{escape(_text(event.properties))}</code></td></tr>"
        for event in profile.recent
    )
    return f"<table><caption>Recent events</caption>{rows}</table>"


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return orjson.dumps(value, default=str).decode()
