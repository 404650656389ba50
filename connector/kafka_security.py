"""How every Kafka client connects: bootstrap, client id, SASL and TLS, from one KafkaSettings.

Every producer, consumer and admin client the connector builds takes `client_kwargs(...)`, so a
cluster that needs SASL or TLS is reached the same way by the receiver, the worker and the
operator commands. When a client cannot start, `connect_failure(...)` finds out whether the
brokers refused its credentials or TLS handshake, which aiokafka only logs, and says so without
ever showing the password; `start_consumer(...)` starts a consumer that way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from typing import TYPE_CHECKING, Any

from aiokafka.conn import collect_hosts, create_conn
from aiokafka.errors import (
    IllegalSaslStateError,
    KafkaError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)

from connector.errors import ConfigError, ConnectorError, KafkaUnavailable
from connector.kafka_tls import reason

if TYPE_CHECKING:
    from aiokafka import AIOKafkaConsumer

    from connector.config import KafkaSettings

# A refusal shows within one round trip; a broker that takes longer is only unreachable.
_PROBE_TIMEOUT_S = 5.0


class KafkaRefused(ConfigError):
    """A broker answered but refused the SASL login or the TLS handshake; settings must change."""


class _HideSaslTokens(logging.Filter):
    """Mask SASL exchanges in aiokafka's debug lines: a PLAIN token holds the password as is."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_masked(arg) for arg in record.args)
        return True


def _masked(arg: object) -> object:
    name = type(arg).__name__
    return f"<{name}, not shown>" if name.startswith("SaslAuthenticate") else arg


_SASL_TOKENS = _HideSaslTokens()


def client_kwargs(kafka: KafkaSettings, role: str | None = None) -> dict[str, Any]:
    """Return the keyword arguments every aiokafka client takes: where, who, and how securely.

    `role` is appended to the client id (`outgrow-braze-admin`), so brokers can tell clients apart.
    """
    client_id = kafka.kafka_client_id if role is None else f"{kafka.kafka_client_id}-{role}"
    kwargs: dict[str, Any] = {
        "bootstrap_servers": kafka.kafka_bootstrap_servers,
        "client_id": client_id,
        "request_timeout_ms": kafka.kafka_request_timeout_ms,
        "security_protocol": kafka.kafka_security_protocol,
    }
    if kafka.uses_sasl:
        assert kafka.kafka_sasl_password is not None  # checked when the settings were loaded
        logging.getLogger("aiokafka.conn").addFilter(_SASL_TOKENS)  # a repeat is skipped
        kwargs["sasl_mechanism"] = kafka.kafka_sasl_mechanism
        kwargs["sasl_plain_username"] = kafka.kafka_sasl_username
        kwargs["sasl_plain_password"] = kafka.kafka_sasl_password.get_secret_value()
    if kafka.uses_tls:
        kwargs["ssl_context"] = kafka.tls_context()
    return kwargs


async def connect_failure(kafka: KafkaSettings, exc: BaseException) -> ConnectorError:
    """Say why a client could not start: KafkaRefused if a broker refused it, else unreachable."""
    refusal = await _refusal(kafka) if kafka.kafka_security_protocol != "PLAINTEXT" else None
    return refusal if refusal is not None else unreachable(kafka, exc)


def unreachable(kafka: KafkaSettings, exc: BaseException) -> KafkaUnavailable:
    """Kafka did not answer (or failed) a client: where it was sought and why, password hidden."""
    return KafkaUnavailable(
        scrub(f"cannot reach Kafka at {kafka.kafka_bootstrap_servers}: {exc}", kafka)
    )


async def start_consumer(consumer: AIOKafkaConsumer, kafka: KafkaSettings) -> None:
    """Start a consumer; if it cannot, close it and raise what connect_failure says instead."""
    try:
        await consumer.start()
    except KafkaError as exc:
        with contextlib.suppress(Exception):
            await consumer.stop()
        raise await connect_failure(kafka, exc) from None


async def _refusal(kafka: KafkaSettings) -> KafkaRefused | None:
    """Open one connection to each bootstrap broker to see whether any refuses the client."""
    options = client_kwargs(kafka, "probe")
    bootstrap = options.pop("bootstrap_servers")
    for host, port, _ in collect_hosts(bootstrap, randomize=False):
        try:
            async with asyncio.timeout(_PROBE_TIMEOUT_S):
                connection = await create_conn(host, port, **options)
        except (OSError, KafkaError, TimeoutError) as exc:
            refusal = _as_refusal(kafka, f"{host}:{port}", exc)
            if refusal is not None:
                return refusal
        else:
            connection.close()
    return None


def _as_refusal(kafka: KafkaSettings, broker: str, exc: BaseException) -> KafkaRefused | None:
    if isinstance(exc, ssl.SSLError):
        message = (
            f"the TLS handshake with Kafka at {broker} failed: {reason(exc)} "
            "(check KAFKA_SSL_CA_FILE, KAFKA_SSL_CHECK_HOSTNAME, and that the listener speaks TLS)"
        )
    elif isinstance(exc, SaslAuthenticationFailed | UnsupportedSaslMechanismError):
        message = (
            f"Kafka at {broker} refused the {kafka.kafka_sasl_mechanism} login of "
            f"KAFKA_SASL_USERNAME {kafka.kafka_sasl_username!r}: {exc}"
        )
    elif isinstance(exc, IllegalSaslStateError):
        message = f"Kafka at {broker} takes no SASL login on that listener (is it a SASL one?)"
    else:
        return None
    return KafkaRefused(scrub(message, kafka))


def scrub(text: str, kafka: KafkaSettings) -> str:
    """Replace the SASL password in a text that quotes someone else's error message."""
    secret = kafka.kafka_sasl_password.get_secret_value() if kafka.kafka_sasl_password else ""
    return text.replace(secret, "**********") if secret else text
