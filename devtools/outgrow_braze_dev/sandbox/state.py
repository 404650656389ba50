"""The sandbox's configuration, parsed once, and the state its handlers share."""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson
from aiohttp import web

from connector.errors import ConfigError
from outgrow_braze_dev.sandbox.contract import ObjectLimit
from outgrow_braze_dev.sandbox.faults import Faults, FaultSettings, InvalidFaults, parse_faults
from outgrow_braze_dev.sandbox.keys import Keyring
from outgrow_braze_dev.sandbox.limits import WindowLimiter
from outgrow_braze_dev.sandbox.stats import Stats
from outgrow_braze_dev.sandbox.store import ProfileStore
from outgrow_braze_dev.settings import SandboxSettings


@dataclass(frozen=True)
class SandboxConfig:
    """Everything the sandbox needs, checked at the edge."""

    host: str
    port: int
    keyring: Keyring
    object_limit: ObjectLimit
    max_body_bytes: int
    track_budget: tuple[int, float]
    export_budget: tuple[int, float]
    faults: FaultSettings
    recent_events: int

    @classmethod
    def from_settings(cls, settings: SandboxSettings) -> SandboxConfig:
        """Parse the settings; a malformed key list or fault object is a ConfigError."""
        return cls(
            host=settings.sandbox_host,
            port=settings.sandbox_port,
            keyring=Keyring.from_settings(settings),
            object_limit=ObjectLimit(
                settings.sandbox_max_objects, settings.sandbox_legacy_object_limit
            ),
            max_body_bytes=settings.sandbox_max_body_bytes,
            track_budget=(settings.sandbox_track_rate_limit, settings.sandbox_track_rate_window_s),
            export_budget=(
                settings.sandbox_export_rate_limit,
                settings.sandbox_export_rate_window_s,
            ),
            faults=_initial_faults(settings.sandbox_faults),
            recent_events=settings.sandbox_recent_events,
        )


def _initial_faults(text: str | None) -> FaultSettings:
    if not text or not text.strip():
        return FaultSettings()
    try:
        return parse_faults(orjson.loads(text))
    except orjson.JSONDecodeError:
        raise ConfigError("SANDBOX_FAULTS: not a JSON object") from None
    except InvalidFaults as exc:
        raise ConfigError(f"SANDBOX_FAULTS: {exc}") from None


@dataclass
class SandboxState:
    """What the handlers share: one workspace's profiles, budgets, faults and counters."""

    config: SandboxConfig
    store: ProfileStore = field(init=False)
    track_limiter: WindowLimiter = field(init=False)
    export_limiter: WindowLimiter = field(init=False)
    faults: Faults = field(init=False)
    stats: Stats = field(default_factory=Stats)

    def __post_init__(self) -> None:
        config = self.config
        self.store = ProfileStore(config.recent_events)
        self.track_limiter = WindowLimiter(*config.track_budget)
        self.export_limiter = WindowLimiter(*config.export_budget)
        self.faults = Faults(config.faults)

    def reset(self) -> None:
        """Back to the start-up state: no profiles, fresh budgets and counters, initial faults."""
        self.store.clear()
        self.track_limiter.reset()
        self.export_limiter.reset()
        self.faults.reset()
        self.stats.reset()


STATE = web.AppKey("sandbox_state", SandboxState)
