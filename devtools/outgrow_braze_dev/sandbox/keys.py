"""REST API keys and their permissions, as a Braze workspace holds them.

Braze sends the key as `Authorization: Bearer <key>`, and each key carries a fixed set of
permissions such as `users.track` (https://www.braze.com/docs/api/basics).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from connector.config import split_list
from connector.errors import ConfigError
from outgrow_braze_dev.settings import SandboxSettings

EVERY_PERMISSION = "*"
TRACK = "users.track"
EXPORT_IDS = "users.export.ids"
_PERMISSION = re.compile(r"^[a-z][a-z_]*(\.[a-z][a-z_]*)*$")

Permissions = frozenset[str]


def bearer_token(authorization: str | None) -> str | None:
    """The key of an `Authorization: Bearer <key>` header, or None if it has another shape."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def allows(permissions: Permissions, needed: str) -> bool:
    """True when a key with `permissions` may call an endpoint that needs `needed`."""
    return needed in permissions or EVERY_PERMISSION in permissions


def parse_extra_keys(text: str) -> dict[str, Permissions]:
    """Read `key:perm+perm,key2:perm` into a mapping; raise ValueError on a malformed entry."""
    keys: dict[str, Permissions] = {}
    for position, entry in enumerate(split_list(text), start=1):
        key, sep, granted = entry.partition(":")
        if not sep or not key.strip():
            raise ValueError(f"entry {position} is not key:permission+permission")
        names = frozenset(name.strip() for name in granted.split("+") if name.strip())
        bad = sorted(name for name in names if not _valid_permission(name))
        if bad:
            raise ValueError(f"entry {position} names an invalid permission {bad[0]!r}")
        keys[key.strip()] = names
    return keys


def _valid_permission(name: str) -> bool:
    return name == EVERY_PERMISSION or bool(_PERMISSION.match(name))


@dataclass(frozen=True)
class Keyring:
    """Every key the sandbox accepts, with what each may do."""

    keys: Mapping[str, Permissions]

    def __repr__(self) -> str:
        return f"Keyring({len(self.keys)} keys)"

    def permissions(self, key: str | None) -> Permissions | None:
        """The permissions of a presented key, or None for a missing or unknown one."""
        # A plain lookup: this is a local test double, not a guard of real data.
        return self.keys.get(key) if key is not None else None

    @classmethod
    def from_settings(cls, settings: SandboxSettings) -> Keyring:
        """Build the keyring, naming the variable at fault if a setting is malformed."""
        keys: dict[str, Permissions] = {}
        if settings.sandbox_extra_keys is not None:
            try:
                keys.update(parse_extra_keys(settings.sandbox_extra_keys.get_secret_value()))
            except ValueError as exc:
                raise ConfigError(f"SANDBOX_EXTRA_KEYS: {exc}") from None
        primary = settings.sandbox_api_key.get_secret_value().strip()
        if not primary:
            raise ConfigError("SANDBOX_API_KEY: must not be blank")
        keys[primary] = frozenset({EVERY_PERMISSION})
        return cls(keys)
