"""`verify`: read one profile back from Braze and show what Outgrow put there.

Braze's `POST /users/export/ids` takes up to 50 external ids or aliases, or one e-mail address or
phone number, and returns only the `fields_to_export` asked for. Its budget is small (250
requests a minute for workspaces created since 2024-08-22), which is fine for one look at a time.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import IO, Any, Literal

import aiohttp
import orjson

from connector.braze import api_url, retry_after
from connector.config import WorkerSettings
from connector.errors import ConnectorError
from connector.http_client import client_session, proxy_for
from connector.tables import print_table

EXPORT_PATH = "/users/export/ids"
FIELDS = (
    "external_id",
    "braze_id",
    "email",
    "created_at",
    "custom_attributes",
    "custom_events",
)
DEFAULT_PREFIX = "outgrow_"


class VerifyFailed(ConnectorError):
    """Braze did not return the profile; the message says why and what to do."""


class UserNotFound(VerifyFailed):
    """No Braze profile matches the identifier."""


@dataclass(frozen=True)
class Identity:
    """Who to look up: an external id or an e-mail address."""

    kind: Literal["external_id", "email"]
    value: str

    def request_body(self) -> dict[str, Any]:
        """The export request for this one user."""
        if self.kind == "email":
            return {"email_address": self.value, "fields_to_export": list(FIELDS)}
        return {"external_ids": [self.value], "fields_to_export": list(FIELDS)}

    def __str__(self) -> str:
        return f"{self.kind} {self.value}"


@dataclass(frozen=True)
class EventSummary:
    """One custom event as Braze counts it on a profile."""

    name: str
    count: int
    first: str | None
    last: str | None


@dataclass(frozen=True)
class OutgrowProfile:
    """The Outgrow part of one exported profile."""

    braze_id: str | None
    external_id: str | None
    email: str | None
    attributes: dict[str, Any]
    events: tuple[EventSummary, ...]

    @property
    def has_data(self) -> bool:
        """True when Outgrow wrote an attribute or an event."""
        return bool(self.attributes or self.events)


def outgrow_profile(user: dict[str, Any], prefix: str = DEFAULT_PREFIX) -> OutgrowProfile:
    """Keep the attributes and events named with the prefix; latest events first."""
    custom = user.get("custom_attributes") or {}
    attributes = {k: v for k, v in sorted(custom.items()) if k.startswith(prefix)}
    events = [
        EventSummary(str(e["name"]), int(e.get("count") or 0), e.get("first"), e.get("last"))
        for e in user.get("custom_events") or ()
        if isinstance(e, dict) and str(e.get("name", "")).startswith(prefix)
    ]
    events.sort(key=lambda e: e.last or "", reverse=True)
    return OutgrowProfile(
        user.get("braze_id"), user.get("external_id"), user.get("email"), attributes, tuple(events)
    )


class Exporter:
    """`POST /users/export/ids` with the worker's endpoint and key; errors explain themselves."""

    def __init__(self, settings: WorkerSettings) -> None:
        self.endpoint = settings.braze_rest_endpoint.rstrip("/")
        self._url = api_url(self.endpoint, EXPORT_PATH)
        self._key = settings.braze_api_key.get_secret_value()
        self._timeout_s, self._ca_file = settings.braze_timeout_s, settings.braze_ca_file

    def redact(self, text: str) -> str:
        """Remove the API key, which Braze echoes in some 401 bodies."""
        return text.replace(self._key, "<api-key>") if self._key else text

    async def users(self, identity: Identity) -> list[dict[str, Any]]:
        """The exported users matching the identity; VerifyFailed if Braze would not say."""
        headers = {"Authorization": f"Bearer {self._key}", "Content-Type": "application/json"}
        body = orjson.dumps(identity.request_body())
        try:
            async with (
                client_session(timeout_s=self._timeout_s, ca_file=self._ca_file) as session,
                session.post(
                    self._url, data=body, headers=headers, proxy=proxy_for(self._url)
                ) as response,
            ):
                raw = await response.read()
                status, answer_headers = response.status, response.headers
        except (aiohttp.ClientError, TimeoutError) as exc:
            reason = self.redact(str(exc)) or type(exc).__name__
            raise VerifyFailed(f"cannot reach Braze at {self.endpoint}: {reason}") from None
        return self._read(status, raw, answer_headers)

    def _read(self, status: int, raw: bytes, headers: Any) -> list[dict[str, Any]]:
        document = _json(raw)
        message = self.redact(str(document.get("message") or raw[:200].decode("utf-8", "replace")))
        if 200 <= status < 300 and isinstance(document.get("users"), list):
            return [user for user in document["users"] if isinstance(user, dict)]
        raise self._failure(status, message, headers)

    def _failure(self, status: int, message: str, headers: Any) -> VerifyFailed:
        if status == 401:
            return VerifyFailed(
                f"Braze refused the API key (HTTP 401: {message}). Check BRAZE_API_KEY, and that "
                f"BRAZE_REST_ENDPOINT ({self.endpoint}) is the instance of its workspace."
            )
        if status == 403:
            return VerifyFailed(
                f"the API key may not export users (HTTP 403: {message}). Give it the "
                "users.export.ids permission in Braze (Settings > APIs and Identifiers)."
            )
        if status == 429:
            return _throttled(retry_after(headers))
        return VerifyFailed(f"Braze answered HTTP {status} to {EXPORT_PATH}: {message}")


def _throttled(wait_s: float | None) -> VerifyFailed:
    if wait_s is None:
        failure = VerifyFailed(
            f"Braze's {EXPORT_PATH} rate limit is spent (HTTP 429); retry in a minute."
        )
    else:
        at = datetime.fromtimestamp(time.time() + wait_s, UTC).strftime("%H:%M:%S UTC")
        failure = VerifyFailed(
            f"Braze's {EXPORT_PATH} rate limit is spent (HTTP 429); retry in {wait_s:.0f} s "
            f"(after {at})."
        )
    failure.retriable, failure.retry_after_s = True, wait_s
    return failure


def _json(raw: bytes) -> dict[str, Any]:
    try:
        document = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError:
        return {}
    return document if isinstance(document, dict) else {}


async def verify(
    settings: WorkerSettings, identity: Identity, prefix: str = DEFAULT_PREFIX
) -> list[OutgrowProfile]:
    """The Outgrow part of every profile matching the identity; UserNotFound if none does."""
    users = await Exporter(settings).users(identity)
    if not users:
        raise UserNotFound(f"no Braze profile has {identity} (at {settings.braze_rest_endpoint})")
    return [outgrow_profile(user, prefix) for user in users]


def as_json(profiles: list[OutgrowProfile]) -> dict[str, Any]:
    """A JSON-ready view of the profiles."""
    return {"users": [asdict(profile) for profile in profiles]}


def print_profiles(profiles: list[OutgrowProfile], prefix: str, stream: IO[str]) -> None:
    """Each profile's identifiers, then its Outgrow attributes and events as tables."""
    for profile in profiles:
        names = ("external_id", "braze_id", "email")
        ids = [f"{n} {getattr(profile, n)}" for n in names if getattr(profile, n) is not None]
        stream.write(f"Braze profile: {', '.join(ids)}\n")
        if not profile.has_data:
            stream.write(f"  no {prefix}* attributes or events on this profile\n")
            continue
        rows = [(name, _show(value)) for name, value in profile.attributes.items()]
        print_table(f"{prefix}* attributes", ("attribute", "value"), rows, stream)
        events = [(e.name, e.count, e.first, e.last) for e in profile.events]
        print_table(f"{prefix}* events", ("event", "count", "first", "last"), events, stream)


def _show(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()
