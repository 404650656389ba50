"""Every HTTP client goes through the proxy the environment names, unless NO_PROXY exempts its
host: the worker against a real broker and the sandbox through a real forward proxy on loopback,
then `verify` and `status`; and BRAZE_CA_FILE is checked when the settings are read."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from connector.config import WorkerSettings, load
from connector.errors import ConfigError
from connector.http_client import PROXY_VARIABLES, client_session, tls_context
from connector.status import probe
from outgrow_braze_dev.sandbox.app import Sandbox
from outgrow_braze_dev.sandbox.state import SandboxConfig
from tests.cli_support import run_cli
from tests.http_support import (
    ForwardProxy,
    aiohttp_server,
    forward_proxy,
    make_certificate,
    serving_context,
)
from tests.worker_support import lead, pipeline, sandbox_settings

USERS = 60


@pytest.fixture
async def proxy(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[ForwardProxy]:
    """A forward proxy named by HTTP_PROXY, and no other proxy variable of this machine's."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    async with forward_proxy() as running:
        monkeypatch.setenv("HTTP_PROXY", running.url)
        yield running


async def test_the_worker_delivers_everything_through_the_proxy(
    proxy: ForwardProxy, bootstrap_servers: str
) -> None:
    async with pipeline(bootstrap_servers) as line:
        await line.produce([lead(user, 0) for user in range(USERS)])
        line.start_worker()
        await line.all_committed()
        answered = line.sandbox.state.stats.snapshot()["requests"]["/users/track"]

    assert all(line.profile(user) is not None for user in range(USERS))
    assert proxy.targets, "nothing went through the proxy"
    assert set(proxy.targets) == {f"{line.sandbox.base_url}/users/track"}
    assert len(proxy.targets) == sum(answered.values())


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
        result = await run_cli(
            capsys, "verify", "--braze-rest-endpoint", endpoint, "--email", "a@b.c"
        )
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
        assert session.trust_env
