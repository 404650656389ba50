"""API keys: the Bearer header, extra keys with permissions, and the settings behind them."""

from __future__ import annotations

import pytest

from connector.config import load
from connector.errors import ConfigError
from outgrow_braze_dev.sandbox.keys import (
    EVERY_PERMISSION,
    Keyring,
    allows,
    bearer_token,
    parse_extra_keys,
)
from outgrow_braze_dev.settings import SandboxSettings


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc", "abc"),
        ("bearer  abc ", "abc"),
        ("Bearer", None),
        ("Bearer ", None),
        ("Basic abc", None),
        ("abc", None),
        ("", None),
        (None, None),
    ],
)
def test_bearer_token(header: str | None, token: str | None) -> None:
    assert bearer_token(header) == token


def test_extra_keys_name_their_permissions() -> None:
    keys = parse_extra_keys(" ro:users.export.ids , rw:users.track+users.export.ids,none:,all:* ")
    assert keys == {
        "ro": frozenset({"users.export.ids"}),
        "rw": frozenset({"users.track", "users.export.ids"}),
        "none": frozenset(),
        "all": frozenset({"*"}),
    }


@pytest.mark.parametrize("text", ["no-colon", ":users.track", "k:Users.Track", "k:users..track"])
def test_malformed_extra_keys_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="entry 1"):
        parse_extra_keys(text)


def test_allows_checks_the_permission_or_everything() -> None:
    assert allows(frozenset({"users.track"}), "users.track")
    assert not allows(frozenset({"users.track"}), "users.export.ids")
    assert allows(frozenset({EVERY_PERMISSION}), "users.export.ids")


def test_the_keyring_gives_the_main_key_every_permission() -> None:
    settings = load(
        SandboxSettings, {"sandbox_api_key": "main", "sandbox_extra_keys": "ro:users.export.ids"}
    )
    keyring = Keyring.from_settings(settings)
    assert keyring.permissions("main") == frozenset({EVERY_PERMISSION})
    assert keyring.permissions("ro") == frozenset({"users.export.ids"})
    assert keyring.permissions("other") is None
    assert keyring.permissions(None) is None
    assert "main" not in repr(keyring)


def test_the_keyring_names_the_setting_at_fault() -> None:
    with pytest.raises(ConfigError, match="SANDBOX_EXTRA_KEYS"):
        Keyring.from_settings(load(SandboxSettings, {"sandbox_extra_keys": "broken"}))
    with pytest.raises(ConfigError, match="SANDBOX_API_KEY"):
        Keyring.from_settings(load(SandboxSettings, {"sandbox_api_key": "  "}))


def test_the_development_key_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SANDBOX_API_KEY", raising=False)
    settings = load(SandboxSettings)
    assert settings.sandbox_api_key.get_secret_value() == "outgrow-braze-sandbox-dev-key"
    assert "outgrow-braze-sandbox-dev-key" not in repr(settings)
