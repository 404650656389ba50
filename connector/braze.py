"""The Braze /users/track client: one session, a budget-shaped rate limiter, a response table."""

from __future__ import annotations

import asyncio
import enum
import re
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import aiohttp
import orjson
from yarl import URL

from connector.budget import TokenBucket, window_shape
from connector.config import WorkerSettings
from connector.errors import ConfigError
from connector.http_client import client_session, proxy_for

TRACK_PATH = "/users/track"
USER_AGENT = "outgrow-braze"


class Action(enum.StrEnum):
    """What the worker does with a Braze answer."""

    DONE = "done"  # applied; objects named in `errors` go to the dead-letter topic
    SPLIT = "split"  # the request as a whole was refused: halve it to find the bad objects
    HALT = "halt"  # configuration problem (key, permission, endpoint): stop and probe
    RETRY = "retry"  # transient (429, 5xx, timeout, connection): back off and resend


# https://www.braze.com/docs/api/errors : 2xx success (201 may carry minor `errors`); 400 bad
# request, 413 too large -> split; 401/403/404/415 are configuration problems; 429 and 5xx are
# retried with backoff.
RESPONSE_TABLE: dict[int, Action] = {
    200: Action.DONE,
    201: Action.DONE,
    400: Action.SPLIT,
    413: Action.SPLIT,
    401: Action.HALT,
    403: Action.HALT,
    404: Action.HALT,
    415: Action.HALT,
    408: Action.RETRY,
    429: Action.RETRY,
}


def action_for(status: int) -> Action:
    """Look up the action for an HTTP status; 0 stands for a timeout or connection error."""
    if status in RESPONSE_TABLE:
        return RESPONSE_TABLE[status]
    if status == 0 or status >= 500:
        return Action.RETRY
    if 200 <= status < 300:
        return Action.DONE
    # An undocumented 3xx/4xx: stopping loses nothing, guessing "bad data" could.
    return Action.HALT


@dataclass(frozen=True)
class Answer:
    """Braze's answer to one request, reduced to what the worker needs."""

    status: int
    action: Action
    message: str
    errors: tuple[dict[str, Any], ...] = ()
    retry_after_s: float | None = None


@dataclass(frozen=True)
class RateBudget:
    """A request budget such as 3000 requests per 3 seconds."""

    requests: int
    period_s: float

    @classmethod
    def parse(cls, text: str) -> RateBudget:
        """Read `3000/3s`, `250/1m` or `100/500ms`."""
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)?\s*(ms|s|m|h)\s*", text)
        if not match or int(match.group(1)) < 1:
            raise ConfigError(f"rate {text!r} is not like 3000/3s (requests per period)")
        scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}[match.group(3)]
        period = float(match.group(2) or 1) * scale
        if period <= 0:
            raise ConfigError(f"rate {text!r} has an empty period")
        return cls(int(match.group(1)), period)

    @property
    def per_s(self) -> float:
        """The budget in requests per second."""
        return self.requests / self.period_s


@dataclass
class AdaptiveLimiter:
    """A token bucket no window of `period_s` can exceed (`budget.window_shape`), cut on 429s
    and regrown slowly."""

    budget: RateBudget
    share: float = 1.0
    burst_fraction: float = 0.04
    floor_fraction: float = 0.05
    factor: float = 1.0  # cut by 429s, regrown towards 1
    growth_step: float = 0.05
    paused_until: float = 0.0
    _changed_at: float = 0.0
    _bucket: TokenBucket = field(init=False)

    def __post_init__(self) -> None:
        self._bucket = TokenBucket(*self._shape())

    @property
    def requests_per_s(self) -> float:
        """The rate now allowed."""
        return self.budget.requests * self.share * self.factor / self.budget.period_s

    def _shape(self) -> tuple[float, float]:
        """(bucket size, refill per second) for the current share and factor."""
        per_window = self.budget.requests * self.share * self.factor
        return window_shape(per_window, self.budget.period_s, self.burst_fraction)

    def _reshape(self) -> None:
        self._bucket.reshape(*self._shape())

    def set_share(self, share: float) -> None:
        """Use a new share of the workspace budget (after a rebalance)."""
        if share != self.share:
            self.share = max(share, 0.0001)
            self._reshape()

    async def acquire(self) -> float:
        """Wait for a request slot; return the seconds waited."""
        started = time.monotonic()
        # A pause may be extended while we sleep, so look again after each one.
        while (delay := self.paused_until - time.monotonic()) > 0:  # noqa: ASYNC110
            await asyncio.sleep(delay)
        await self._bucket.acquire()
        return time.monotonic() - started

    def free_now(self) -> int:
        """Request slots to be had without waiting: none during a pause, or while a retry
        waits in `acquire()` (it goes first)."""
        if self.paused_until > time.monotonic():
            return 0
        return self._bucket.free_now()

    def take_now(self, slots: int) -> None:
        """Take request slots that `free_now()` offered, before any await."""
        self._bucket.take_now(slots)

    def seconds_to_free(self) -> float:
        """How long until `free_now()` may offer a slot again (never zero: a waiting retry
        may take the next one)."""
        pause = self.paused_until - time.monotonic()
        return max(pause, self._bucket.seconds_to_free(), 0.001)

    def throttled(self, retry_after_s: float | None) -> None:
        """Braze said 429: pause as told, then continue at half the rate.

        Concurrent requests see the same 429s; the rate is cut once per pause, not once each.
        """
        now = time.monotonic()
        if now >= self.paused_until:
            self.factor = max(self.factor / 2, self.floor_fraction)
            self._reshape()
        self.paused_until = max(self.paused_until, now + (retry_after_s or 1.0))
        self._changed_at = now

    def succeeded(self) -> None:
        """A request went through: regrow the rate additively, a step per tenth of a period."""
        now = time.monotonic()
        if self.factor < 1.0 and now - self._changed_at >= self.budget.period_s / 10:
            self.factor = min(1.0, self.factor + self.growth_step)
            self._changed_at = now
            self._reshape()


def retry_after(headers: Any, now: float | None = None) -> float | None:
    """Seconds to wait from Braze's rate headers, or None when they say nothing."""
    value = headers.get("X-Ratelimit-Retry-After") or headers.get("Retry-After")
    if value is not None:
        try:
            return max(float(value), 0.0)
        except ValueError:
            return None
    reset = headers.get("X-RateLimit-Reset")
    if reset is None:
        return None
    try:
        number = float(reset)
    except ValueError:
        return None
    # One Braze page documents epoch seconds, another seconds remaining: tell them apart.
    if number >= 100_000_000:
        return max(number - (now if now is not None else time.time()), 0.0)
    return max(number, 0.0)


class BrazeClient:
    """POST /users/track bodies over one long-lived aiohttp session (`connector.http_client`):
    pooled keep-alive connections, TLS verified, through the proxy the environment names."""

    def __init__(
        self,
        endpoint: str,
        api_key: str,
        timeout_s: float,
        connections: int,
        ca_file: str | None = None,
    ) -> None:
        self._url = api_url(endpoint, TRACK_PATH)
        self._proxy = proxy_for(self._url)
        self._api_key = api_key
        self._headers = {
            "Authorization": f"Bearer {api_key}",
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
        }
        self._timeout_s, self._connections, self._ca_file = timeout_s, connections, ca_file
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_settings(cls, settings: WorkerSettings, connections: int) -> BrazeClient:
        """The client of BRAZE_REST_ENDPOINT with its key, timeout and CA file."""
        return cls(
            settings.braze_rest_endpoint,
            settings.braze_api_key.get_secret_value(),
            settings.braze_timeout_s,
            connections,
            settings.braze_ca_file,
        )

    async def __aenter__(self) -> BrazeClient:
        self._session = client_session(
            timeout_s=self._timeout_s,
            ca_file=self._ca_file,
            connections=self._connections,
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()

    def redact(self, text: str) -> str:
        """Remove the API key, which Braze echoes in some 401 bodies."""
        return text.replace(self._api_key, "<api-key>") if self._api_key else text

    async def track(self, body: bytes) -> Answer:
        """Send one JSON body and classify the answer; never raises for HTTP or network trouble."""
        assert self._session is not None, "use the client in `async with`"
        try:
            async with self._session.post(
                self._url,
                data=body,
                headers=self._headers,
                proxy=self._proxy,
            ) as response:
                raw = await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            return Answer(0, Action.RETRY, self.redact(f"no answer from Braze: {_why(exc)}"))
        return self._answer(response.status, raw, response.headers)

    def _answer(self, status: int, raw: bytes, headers: Any) -> Answer:
        message, errors = _read_body(raw)
        action = action_for(status)
        if action is Action.DONE and message not in ("success", ""):
            # 2xx with a fatal message does not happen per the docs; never count it as applied.
            action = Action.RETRY
        return Answer(
            status=status,
            action=action,
            message=self.redact(message)[:500],
            errors=errors,
            retry_after_s=retry_after(headers),
        )


def api_url(endpoint: str, path: str) -> URL:
    """The URL of a Braze REST API path under BRAZE_REST_ENDPOINT; ConfigError if it is none."""
    name = "BRAZE_REST_ENDPOINT"
    try:
        url = URL(endpoint.strip())
    except ValueError as exc:
        raise ConfigError(f"{name} is not a URL: {exc}") from None
    if url.scheme not in ("http", "https"):
        raise ConfigError(f"{name} {endpoint!r} must start with http:// or https://")
    if not url.host:
        raise ConfigError(f"{name} {endpoint!r} names no host")
    if url.user is not None or url.password is not None or url.query_string or url.fragment:
        # Not quoted: what follows the host may be a credential.
        raise ConfigError(f"{name} may hold only a scheme, host, port and path")
    return url.with_path(url.path.rstrip("/") + path)


def _why(exc: BaseException) -> str:
    """A few words on why no answer came, without the request."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, aiohttp.ClientHttpProxyError):  # its text names the proxy, password too
        return f"the proxy answered {exc.status} {exc.message}"
    if isinstance(exc, aiohttp.ClientProxyConnectionError):
        return f"cannot connect to the proxy: {exc.os_error.strerror or exc.os_error}"
    if isinstance(exc, aiohttp.ClientSSLError):  # the proxy's CA missing from BRAZE_CA_FILE?
        error = exc.os_error
        reason = getattr(error, "verify_message", None) or getattr(error, "reason", None)
        return f"TLS failed: {reason or error}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect: {exc.os_error.strerror or type(exc.os_error).__name__}"
    return str(exc) or type(exc).__name__


def _read_body(raw: bytes) -> tuple[str, tuple[dict[str, Any], ...]]:
    try:
        body = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError:
        return raw[:200].decode("utf-8", "replace"), ()
    if not isinstance(body, dict):
        return "", ()
    errors = body.get("errors")
    found = tuple(e for e in errors if isinstance(e, dict)) if isinstance(errors, list) else ()
    return str(body.get("message", "")), found
