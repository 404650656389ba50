"""Webhook credentials: HTTP Basic pairs and URL tokens, several at once so they can rotate."""

from __future__ import annotations

import binascii
import hmac
from base64 import b64decode
from dataclasses import dataclass

from connector.config import ReceiverSettings, split_list
from connector.errors import ConfigError

MIN_TOKEN_LENGTH = 16


@dataclass(frozen=True)
class Credentials:
    """What the receiver accepts. Empty means open, which only the insecure flag allows."""

    basic: tuple[bytes, ...] = ()
    tokens: tuple[bytes, ...] = ()

    def __repr__(self) -> str:
        return f"Credentials(basic={len(self.basic)}, tokens={len(self.tokens)})"

    @property
    def open(self) -> bool:
        """True when no credential is configured at all."""
        return not self.basic and not self.tokens

    def allows(self, authorization: str | None, token: str | None) -> bool:
        """Check a request's Authorization header and `token` query value in constant time."""
        if self.open:
            return True
        basic = _basic_pair(authorization)
        # Compare against every credential, so the time taken says nothing about which matched.
        matched = False
        for expected in self.basic:
            matched |= basic is not None and hmac.compare_digest(basic, expected)
        for expected in self.tokens:
            matched |= token is not None and hmac.compare_digest(token.encode(), expected)
        return matched


def _basic_pair(authorization: str | None) -> bytes | None:
    """Decode `Basic base64(user:password)` into b"user:password", or None."""
    if not authorization:
        return None
    scheme, _, encoded = authorization.strip().partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        return b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None


def credentials_from(settings: ReceiverSettings) -> Credentials:
    """Parse and check the configured credentials; refuse an open receiver unless asked for."""
    basic = _basic_from(settings)
    tokens = _tokens_from(settings)
    credentials = Credentials(basic=basic, tokens=tokens)
    if credentials.open and not settings.receiver_insecure_no_auth:
        raise ConfigError(
            "no webhook credentials: set WEBHOOK_BASIC_AUTH (user:password) or WEBHOOK_TOKENS, "
            "or pass --receiver-insecure-no-auth for local development"
        )
    return credentials


def _basic_from(settings: ReceiverSettings) -> tuple[bytes, ...]:
    raw = settings.webhook_basic_auth.get_secret_value() if settings.webhook_basic_auth else ""
    pairs = split_list(raw)
    for position, pair in enumerate(pairs, start=1):
        user, sep, password = pair.partition(":")
        if not sep or not user or not password:
            raise ConfigError(
                f"WEBHOOK_BASIC_AUTH entry {position} is not user:password with both parts set"
            )
    return tuple(pair.encode() for pair in pairs)


def _tokens_from(settings: ReceiverSettings) -> tuple[bytes, ...]:
    raw = settings.webhook_tokens.get_secret_value() if settings.webhook_tokens else ""
    tokens = split_list(raw)
    for position, token in enumerate(tokens, start=1):
        if len(token) < MIN_TOKEN_LENGTH:
            raise ConfigError(
                f"WEBHOOK_TOKENS entry {position} is shorter than {MIN_TOKEN_LENGTH} characters"
            )
    return tuple(token.encode() for token in tokens)
