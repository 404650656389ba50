"""Every HTTP client goes through the proxy the environment names, unless NO_PROXY exempts its
host: the worker against a real broker and the sandbox through a real forward proxy on loopback,
then `verify` and `status`; and BRAZE_CA_FILE is checked when the settings are read."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import uvloop
from aiohttp import web
from yarl import URL

from connector.braze import Action, BrazeClient
from connector.config import WorkerSettings, load
from connector.errors import ConfigError
from connector.http_client import PROXY_VARIABLES, client_session, proxy_for, tls_context
from connector.status import probe
from outgrow_braze_dev.sandbox.app import Sandbox
from outgrow_braze_dev.sandbox.state import SandboxConfig
from outgrow_braze_dev.settings import SANDBOX_DEV_API_KEY
from tests.cli_support import run_cli
from tests.http_support import (
    ForwardProxy,
    aiohttp_server,
    forward_proxy,
    make_certificate,
    serving_context,
    tunnel_proxy,
)
from tests.worker_support import free_port, lead, pipeline, sandbox_settings

USERS = 60


@pytest.fixture
def no_proxy_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """None of this machine's proxy variables."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.fixture
async def proxy(
    no_proxy_variables: None, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[ForwardProxy]:
    """A forward proxy named by HTTP_PROXY."""
    async with forward_proxy() as running:
        monkeypatch.setenv("HTTP_PROXY", running.url)
        yield running


async def test_the_worker_delivers_everything_through_the_proxy(
    proxy: ForwardProxy, bootstrap_servers: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url.replace("//", "//outgrow:pr0xy@"))
    async with pipeline(bootstrap_servers) as line:
        await line.produce([lead(user, 0) for user in range(USERS)])
        line.start_worker()
        await line.all_committed()
        answered = line.sandbox.state.stats.snapshot()["requests"]["/users/track"]

    assert all(line.profile(user) is not None for user in range(USERS))
    assert proxy.targets, "nothing went through the proxy"
    assert set(proxy.targets) == {f"{line.sandbox.base_url}/users/track"}
    assert len(proxy.targets) == sum(answered.values())
    assert set(proxy.logins) == {"Basic b3V0Z3JvdzpwcjB4eQ=="}  # outgrow:pr0xy


async def test_no_proxy_sends_the_worker_straight_to_braze(
    proxy: ForwardProxy, bootstrap_servers: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
    async with pipeline(bootstrap_servers) as line:
        await line.produce([lead(user, 0) for user in range(USERS)])
        line.start_worker()
        await line.all_committed()
    assert all(line.profile(user) is not None for user in range(USERS))
    assert proxy.targets == []


async def test_verify_asks_braze_through_the_proxy(
    proxy: ForwardProxy, capsys: pytest.CaptureFixture[str]
) -> None:
    async with Sandbox(SandboxConfig.from_settings(sandbox_settings())) as sandbox:
        endpoint = sandbox.base_url
        braze = ["--braze-rest-endpoint", endpoint, "--braze-api-key", SANDBOX_DEV_API_KEY]
        result = await run_cli(capsys, "verify", *braze, "--email", "a@b.c")
    assert result.code == 1 and "no Braze profile" in result.err  # Braze answered
    assert proxy.targets == [f"{endpoint}/users/export/ids"]


async def test_status_probes_through_the_proxy(proxy: ForwardProxy) -> None:
    async def ready(request: web.Request) -> web.Response:
        return web.json_response({"ready": True})

    async with aiohttp_server(ready) as (url, _):
        service = await probe("worker", url)
    assert service.state == "ready"
    assert proxy.targets == [f"{url}/readyz"]


# -- BRAZE_CA_FILE --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_certificate(tmp_path_factory.mktemp("tls"))


def test_servers_are_verified_by_default() -> None:
    context = tls_context(None)
    assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname


async def test_the_ca_file_is_trusted_besides_the_systems(certificate: Path) -> None:
    async def ready(request: web.Request) -> web.Response:
        return web.json_response({})

    async with aiohttp_server(ready, serving_context(certificate)) as (url, _):
        assert (await probe("worker", url, str(certificate / "cert.pem"))).state == "ready"
        assert (await probe("worker", url)).state == "unreachable"
    system = len(tls_context(None).get_ca_certs())
    assert len(tls_context(str(certificate / "cert.pem")).get_ca_certs()) == system + 1


@pytest.mark.parametrize(
    ("content", "says"),
    [(None, "No such file or directory"), ("not a certificate\n", "NO_CERTIFICATE_OR_CRL_FOUND")],
)
def test_an_unreadable_ca_file_is_a_config_error(
    tmp_path: Path, content: str | None, says: str
) -> None:
    path = tmp_path / "ca.pem"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match=f"BRAZE_CA_FILE {path} cannot be read as PEM") as caught:
        load(WorkerSettings, {"braze_ca_file": str(path)})
    assert says in str(caught.value)


def test_a_blank_ca_file_is_unset() -> None:
    assert load(WorkerSettings, {"braze_ca_file": " "}).braze_ca_file is None


async def test_a_bad_ca_file_stops_a_command_with_exit_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("BRAZE_CA_FILE", str(tmp_path / "missing.pem"))
    result = await run_cli(capsys, "verify", "--email", "a@b.c")
    assert result.code == 2
    assert "BRAZE_CA_FILE" in result.err


async def test_a_session_waits_no_longer_than_its_timeout() -> None:
    async with client_session(timeout_s=2.5, connections=3) as session:
        assert session.timeout.total == 2.5
        assert session.connector is not None and session.connector.limit == 3


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])  # the worker runs on uvloop
def test_https_goes_through_a_tunnel_and_braze_s_key_stays_inside_it(
    no_proxy_variables: None, certificate: Path, monkeypatch: pytest.MonkeyPatch, loop: str
) -> None:
    async def created(request: web.Request) -> web.Response:
        return web.json_response({"message": "success"}, status=201)

    key = "a-braze-key-9e0f"
    settings = {"braze_api_key": key, "braze_ca_file": str(certificate / "cert.pem")}

    async def main() -> tuple[list[int], list[web.Request], str, list[bytes]]:
        async with (
            tunnel_proxy() as proxy,
            aiohttp_server(created, serving_context(certificate)) as (url, seen),
        ):
            monkeypatch.setenv("HTTPS_PROXY", proxy.url.replace("//", "//outgrow:pr0xy@"))
            braze = load(WorkerSettings, {**settings, "braze_rest_endpoint": url})
            async with BrazeClient.from_settings(braze, 2) as client:
                answers = [(await client.track(b"{}")).status for _ in range(3)]
        return answers, seen, url, proxy.heads

    answers, seen, url, heads = (uvloop.run if loop == "uvloop" else asyncio.run)(main())
    assert answers == [201] * 3
    assert len(seen) == 3 and seen[0].secure
    (head,) = heads  # one tunnel, kept alive
    assert head.startswith(f"CONNECT {url.removeprefix('https://')} HTTP/1.1\r\n".encode())
    assert b"Proxy-Authorization: Basic b3V0Z3JvdzpwcjB4eQ==\r\n" in head
    assert key.encode() not in head


async def test_a_proxy_down_or_refusing_is_a_retry_that_names_it_but_not_its_password(
    no_proxy_variables: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    refusing = await asyncio.start_server(refuse, "127.0.0.1", 0)
    proxies = {
        "cannot connect to the proxy": f"127.0.0.1:{free_port()}",
        "the proxy answered 407 Proxy Authentication Required": (
            f"127.0.0.1:{refusing.sockets[0].getsockname()[1]}"
        ),
    }
    async with refusing:
        for says, address in proxies.items():
            monkeypatch.setenv("HTTPS_PROXY", f"http://outgrow:pr0xy@{address}")
            client = BrazeClient("https://rest.iad-01.braze.com", "k", timeout_s=5, connections=1)
            async with client:
                answer = await client.track(b"{}")
            assert (answer.status, answer.action) == (0, Action.RETRY)
            assert says in answer.message and "pr0xy" not in answer.message


def test_a_proxy_that_is_no_url_is_a_config_error_that_hides_it(
    no_proxy_variables: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://outgrow:pr0xy@proxy:99999")
    with pytest.raises(ConfigError, match="the proxy named for https:// is no URL") as caught:
        BrazeClient("https://rest.iad-01.braze.com", "k", timeout_s=5, connections=1)
    assert "pr0xy" not in str(caught.value)


@pytest.mark.parametrize(
    ("variables", "target", "proxy"),
    [
        ({"HTTPS_PROXY": "http://proxy:3128"}, "https://rest.iad-01.braze.com/users/track",
         "http://proxy:3128"),
        ({"https_proxy": "http://u:p%40ss@proxy:3128", "HTTPS_PROXY": "http://other:1"},
         "https://rest.iad-01.braze.com/", "http://u:p%40ss@proxy:3128"),
        ({"HTTPS_PROXY": "http://proxy:3128"}, "http://sandbox:9090/", None),
        ({"HTTP_PROXY": "http://proxy:3128", "NO_PROXY": ".svc,localhost"},
         "http://outgrow-braze-worker.ns.svc:8081/readyz", None),
        ({"HTTP_PROXY": "http://proxy:3128", "NO_PROXY": ".svc,localhost"},
         "http://sandbox:9090/", "http://proxy:3128"),
        ({}, "https://rest.iad-01.braze.com/", None),
        ({"HTTPS_PROXY": "proxy:3128"}, "https://rest.iad-01.braze.com/", "http://proxy:3128"),
    ],
)  # fmt: skip
def test_the_environment_names_the_proxy_of_each_target(
    no_proxy_variables: None,
    monkeypatch: pytest.MonkeyPatch,
    variables: dict[str, str],
    target: str,
    proxy: str | None,
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    assert proxy_for(URL(target)) == (URL(proxy) if proxy else None)
