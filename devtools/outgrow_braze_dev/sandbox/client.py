"""A small client for the sandbox, admin endpoints included, for tests and tools.

async with SandboxClient(base_url) as sandbox:
    answer = await sandbox.track({"attributes": [...]})
    await sandbox.set_faults(error_rate=0.2)
    stats = await sandbox.stats()
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import aiohttp
import orjson

from outgrow_braze_dev.settings import SANDBOX_DEV_API_KEY


@dataclass(frozen=True)
class Answer:
    """One answer: status, decoded JSON body (None if not JSON) and headers."""

    status: int
    body: Any
    headers: Mapping[str, str]


class SandboxClient:
    """Talks to one sandbox; owns its HTTP session unless one is given."""

    def __init__(
        self,
        base_url: str,
        api_key: str = SANDBOX_DEV_API_KEY,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self._session = session
        self._owned = session is None

    async def __aenter__(self) -> SandboxClient:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._owned and self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        """The HTTP session (enter the client first when it owns one)."""
        if self._session is None:
            raise RuntimeError("use `async with SandboxClient(...)` first")
        return self._session

    def headers(self, api_key: str | None = None) -> dict[str, str]:
        """A Braze request's headers with this client's key, or another one."""
        return {
            "Authorization": f"Bearer {api_key or self.api_key}",
            "Content-Type": "application/json",
        }

    async def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Answer:
        """Send one request as given and decode the answer."""
        url = self.base_url + path
        async with self.session.request(method, url, data=body, headers=headers) as response:
            raw = await response.read()
            return Answer(response.status, _decode(raw), dict(response.headers))

    async def track(self, document: Any, api_key: str | None = None) -> Answer:
        """POST /users/track."""
        return await self.request(
            "POST", "/users/track", orjson.dumps(document), self.headers(api_key)
        )

    async def export_ids(self, document: Any, api_key: str | None = None) -> Answer:
        """POST /users/export/ids."""
        return await self.request(
            "POST", "/users/export/ids", orjson.dumps(document), self.headers(api_key)
        )

    async def stats(self) -> dict[str, Any]:
        """GET /_sandbox/stats."""
        return await self._admin("GET", "/_sandbox/stats")

    async def reset(self) -> None:
        """POST /_sandbox/reset."""
        await self._admin("POST", "/_sandbox/reset")

    async def set_faults(self, **faults: Any) -> dict[str, Any]:
        """POST /_sandbox/faults with the given settings; returns the faults in force."""
        return await self._admin("POST", "/_sandbox/faults", orjson.dumps(faults))

    async def clear_faults(self) -> dict[str, Any]:
        """DELETE /_sandbox/faults."""
        return await self._admin("DELETE", "/_sandbox/faults")

    async def _admin(self, method: str, path: str, body: bytes | None = None) -> dict[str, Any]:
        answer = await self.request(method, path, body)
        if answer.status != 200 or not isinstance(answer.body, dict):
            raise RuntimeError(f"{method} {path} answered {answer.status}: {answer.body!r}")
        return answer.body


def _decode(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
