"""The development tools' settings: the Braze sandbox's, read like the connector's own.

They are not in `connector.config.ALL_GROUPS`: the production package does not know the sandbox.
`EVERY_GROUP` adds them to the connector's for what checks settings by name: the deploy tests
(compose's and the dev overlay's sandbox set them) and the benchmarks' clean environments.
"""

from __future__ import annotations

from pydantic import Field, SecretStr

from connector.config import ALL_GROUPS, MIB, Settings

# Public on purpose: the sandbox's key when none is set, which `make run` and compose use.
SANDBOX_DEV_API_KEY = "outgrow-braze-sandbox-dev-key"


class SandboxSettings(Settings):
    """The local Braze sandbox (`outgrow-braze sandbox`), a stand-in for Braze's REST API."""

    sandbox_host: str = Field("127.0.0.1", description="Address the sandbox listens on.")
    sandbox_port: int = Field(
        9090, ge=0, le=65_535, description="Port the sandbox listens on; 0 picks a free one."
    )
    sandbox_api_key: SecretStr = Field(
        SecretStr(SANDBOX_DEV_API_KEY),
        description=f"REST API key with every permission; defaults to the public development "
        f"key `{SANDBOX_DEV_API_KEY}`.",
    )
    sandbox_extra_keys: SecretStr | None = Field(
        None,
        description="More keys, `key:permission+permission`, comma-separated "
        "(e.g. `ro:users.export.ids`; `key:` has none).",
    )
    sandbox_track_rate_limit: int = Field(
        3_000, ge=1, description="`/users/track` requests allowed per window, per workspace."
    )
    sandbox_track_rate_window_s: float = Field(
        3.0, gt=0, description="Length of the `/users/track` rate-limit window."
    )
    sandbox_export_rate_limit: int = Field(
        250, ge=1, description="`/users/export/ids` requests allowed per window."
    )
    sandbox_export_rate_window_s: float = Field(
        60.0, gt=0, description="Length of the `/users/export/ids` rate-limit window."
    )
    sandbox_max_objects: int = Field(
        75, ge=1, description="Objects allowed in one `/users/track` request, all arrays together."
    )
    sandbox_legacy_object_limit: bool = Field(
        False, description="Apply SANDBOX_MAX_OBJECTS to each array instead (legacy rate limits)."
    )
    sandbox_max_body_bytes: int = Field(
        4 * MIB, ge=1_024, le=64 * MIB, description="Largest body accepted; larger ones get 413."
    )
    sandbox_faults: str | None = Field(
        None, description="Faults at start-up: a JSON object as taken by `POST /_sandbox/faults`."
    )
    sandbox_recent_events: int = Field(
        20, ge=0, le=1_000, description="Events kept per profile for the page at `GET /`."
    )


GROUPS: tuple[type[Settings], ...] = (SandboxSettings,)
EVERY_GROUP: tuple[type[Settings], ...] = (*ALL_GROUPS, *GROUPS)
