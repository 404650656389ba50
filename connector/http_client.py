"""Every HTTP client of the connector is an aiohttp session made by `client_session()`.

The worker's Braze client (and replay's, the same), `verify` and `status` all get their session
here, so each reaches the network the same way: through the egress proxy the environment names
(aiohttp's `trust_env`), trusting BRAZE_CA_FILE's CAs besides the system's (a TLS-inspecting
proxy signs with its own), with a timeout on every request.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping

import aiohttp

from connector.errors import ConfigError

# The standard variables aiohttp reads when `trust_env` is on (lower-case spellings too, which
# win): HTTPS_PROXY for https:// targets, HTTP_PROXY for http:// ones, NO_PROXY for the hosts and
# domains that bypass both. They are no settings of ours, so config.py does not list them.
PROXY_VARIABLES = ("HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY")

# A kept-alive connection idle this long is closed rather than reused: servers and proxies drop
# idle connections after a while, and a request sent on one just dropped fails.
KEEPALIVE_S = 15.0


def tls_context(ca_file: str | None) -> ssl.SSLContext:
    """A client TLS context that verifies servers against the system's CAs and `ca_file`'s."""
    context = ssl.create_default_context()
    if ca_file is None:
        return context
    try:
        context.load_verify_locations(cafile=ca_file)
    except OSError as exc:  # ssl.SSLError is an OSError too
        reason = exc.reason if isinstance(exc, ssl.SSLError) else exc.strerror
        raise ConfigError(
            f"BRAZE_CA_FILE {ca_file} cannot be read as PEM certificates: {reason or exc}"
        ) from None
    return context


def client_session(
    *,
    timeout_s: float,
    ca_file: str | None = None,
    connections: int = 100,
    headers: Mapping[str, str] | None = None,
) -> aiohttp.ClientSession:
    """A session with up to `connections` kept-alive connections; call it in the event loop."""
    connector = aiohttp.TCPConnector(
        limit=connections, ssl=tls_context(ca_file), keepalive_timeout=KEEPALIVE_S
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=timeout_s),
        headers=headers,
        trust_env=True,
        cookie_jar=aiohttp.DummyCookieJar(),  # no API answer here sets a cookie worth keeping
    )
