"""Webhook credentials: parsing, rotation, and refusing to run open by accident."""

from __future__ import annotations

import base64

import pytest

from connector.auth import Credentials, credentials_from
from connector.config import ReceiverSettings, load
from connector.errors import ConfigError


def header(pair: str) -> str:
    return "Basic " + base64.b64encode(pair.encode()).decode()


def settings(**values: object) -> ReceiverSettings:
    return load(ReceiverSettings, values)


def test_several_basic_pairs_and_tokens_are_accepted() -> None:
    creds = credentials_from(
        settings(
            webhook_basic_auth="a:1,b:pa:ss", webhook_tokens="0123456789abcdef,fedcba9876543210"
        )
    )
    assert creds.allows(header("a:1"), None)
    assert creds.allows(header("b:pa:ss"), None)
    assert creds.allows(None, "fedcba9876543210")
    assert not creds.allows(header("a:2"), None)
    assert not creds.allows(None, "0123456789abcdeX")
    assert not creds.allows("Basic !!!", None)
    assert not creds.allows("Digest abc", None)
    assert not creds.allows(None, None)


def test_no_credentials_refuses_to_start_unless_insecure() -> None:
    with pytest.raises(ConfigError, match="--receiver-insecure-no-auth"):
        credentials_from(settings())
    assert credentials_from(settings(receiver_insecure_no_auth=True)).open


@pytest.mark.parametrize("raw", ["nocolon", ":password", "user:", "a:1,,b"])
def test_malformed_basic_entries_are_named(raw: str) -> None:
    if raw == "a:1,,b":
        with pytest.raises(ConfigError, match="entry 2"):
            credentials_from(settings(webhook_basic_auth=raw))
        return
    with pytest.raises(ConfigError, match="entry 1"):
        credentials_from(settings(webhook_basic_auth=raw))


def test_short_tokens_are_refused() -> None:
    with pytest.raises(ConfigError, match="shorter than 16"):
        credentials_from(settings(webhook_tokens="short"))


def test_secrets_never_show_in_reprs() -> None:
    s = settings(webhook_basic_auth="user:hunter2-secret", webhook_tokens="tok-0123456789abcdef")
    creds = credentials_from(s)
    for text in (repr(s), str(s), repr(creds)):
        assert "hunter2-secret" not in text
        assert "tok-0123456789abcdef" not in text
    assert repr(Credentials()) == "Credentials(basic=0, tokens=0)"
