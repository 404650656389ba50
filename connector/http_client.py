"""Every HTTP client of the connector is an aiohttp session made by `client_session()`, its
requests routed by `proxy_for()`.

The worker's Braze client (and replay's, the same), `verify` and `status` all reach the network
the same way: through the egress proxy the environment names, trusting BRAZE_CA_FILE's CAs
besides the system's (a TLS-inspecting proxy signs with its own), with a timeout on every request.

The proxy is looked up once per target, not by aiohttp's `trust_env`: that looks it up again on
every request, in a worker thread, and reads ~/.netrc in another, which cost 340 CPU µs a Braze
request (two thirds of the client's time). The lookup itself is the standard library's, the one
aiohttp uses.
"""

from __future__ import annotations

import ssl
from urllib.request import getproxies, proxy_bypass

import aiohttp
from yarl import URL

from connector.errors import ConfigError
from connector.kafka_tls import reason

# The standard variables `proxy_for` honours (lower-case spellings too, which win): HTTPS_PROXY
# for https:// targets, HTTP_PROXY for http:// ones, NO_PROXY for the hosts and domains that
# bypass both. They are no settings of ours, so config.py does not list them.
PROXY_VARIABLES = ("HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY")

# A kept-alive connection idle this long is closed rather than reused: servers and proxies drop
# idle connections after a while, and a request sent on one just dropped fails.
KEEPALIVE_S = 15.0


def proxy_for(target: URL) -> URL | None:
    """The proxy the environment names for `target`'s scheme, unless NO_PROXY exempts its host.

    Credentials in the proxy's URL are aiohttp's to send as Proxy-Authorization, on the CONNECT
    of an https:// target or on the request itself to an http:// one.
    """
    if target.host is None or proxy_bypass(target.host):
        return None
    named = getproxies().get(target.scheme)
    if not named:
        return None
    try:  # `proxy:3128` means http://proxy:3128, as curl reads it
        return URL(named if "://" in named else f"http://{named}")
    except ValueError as exc:  # not quoted: the URL may hold the proxy's password
        raise ConfigError(f"the proxy named for {target.scheme}:// is no URL: {exc}") from None


def tls_context(ca_file: str | None) -> ssl.SSLContext:
    """A client TLS context that verifies servers against the system's CAs and `ca_file`'s."""
    context = ssl.create_default_context()
    if ca_file is None:
        return context
    try:
        context.load_verify_locations(cafile=ca_file)
    except OSError as exc:  # ssl.SSLError is an OSError too
        raise ConfigError(
            f"BRAZE_CA_FILE {ca_file} cannot be read as PEM certificates: {reason(exc)}"
        ) from None
    return context


def client_session(
    *, timeout_s: float, ca_file: str | None = None, connections: int = 100
) -> aiohttp.ClientSession:
    """A session with up to `connections` kept-alive connections; call it in the event loop.

    It has no default headers, and must not: aiohttp adds them to a proxy's request too, where a
    default Authorization (Braze's key) would go to the proxy as Proxy-Authorization.
    """
    connector = aiohttp.TCPConnector(
        limit=connections, ssl=tls_context(ca_file), keepalive_timeout=KEEPALIVE_S
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=timeout_s),
        trust_env=False,  # proxies come from proxy_for(), ~/.netrc is never read
        cookie_jar=aiohttp.DummyCookieJar(),  # no API answer here sets a cookie worth keeping
    )
