"""The TLS context Kafka clients connect with, built from the `KAFKA_SSL_*` files.

Kept apart from `connector.kafka_security`, which loads aiokafka and reads the settings, so
that the settings can check these files when they are loaded without importing it back.
"""

from __future__ import annotations

import ssl

from connector.errors import ConfigError


def client_context(
    ca_file: str | None, cert_file: str | None, key_file: str | None, check_hostname: bool
) -> ssl.SSLContext:
    """Build the client's TLS context, as aiokafka.helpers.create_ssl_context does; ConfigError."""
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file)
    except OSError as exc:  # ssl.SSLError is an OSError too
        raise ConfigError(
            f"KAFKA_SSL_CA_FILE {ca_file} cannot be read as PEM certificates: {reason(exc)}"
        ) from None
    context.check_hostname = check_hostname
    if cert_file:
        _load_client_certificate(context, cert_file, key_file)
    return context


def _load_client_certificate(context: ssl.SSLContext, cert_file: str, key_file: str | None) -> None:
    try:
        # An empty passphrase instead of None: OpenSSL would otherwise prompt on the terminal.
        context.load_cert_chain(cert_file, key_file, password=lambda: "")
    except OSError as exc:
        files = f"KAFKA_SSL_CERT_FILE {cert_file}" + (
            f" and KAFKA_SSL_KEY_FILE {key_file}" if key_file else ""
        )
        raise ConfigError(
            f"{files} cannot be loaded: {reason(exc)} (PEM, an unencrypted key that matches "
            "the certificate)"
        ) from None


def reason(exc: OSError) -> str:
    """Say in a few words why OpenSSL or the file system refused."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        return exc.reason or str(exc)
    return exc.strerror or str(exc)
