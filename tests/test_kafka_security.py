"""Kafka security: the shared client settings, TLS files, and SASL logins to a real broker."""

from __future__ import annotations

import asyncio
import logging
import shutil
import ssl
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import TopicPartition

from connector.cluster import Cluster
from connector.config import KafkaSettings, TopicSettings, WorkerSettings, load
from connector.errors import ConfigError, KafkaUnavailable
from connector.kafka_security import KafkaRefused, client_kwargs
from connector.producer import Publisher
from connector.replay import replay_consumer
from connector.topics import ensure_topics
from connector.worker import WorkerConfig, consumer_for
from outgrow_braze_dev.kafka import JarBroker
from tests.cli_support import run_cli
from tests.worker_support import free_port

USER = "alice"
PASSWORD = "alice-secret-7f3k"
WRONG = "not-it-q9z2w"
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
MIB = 1024 * 1024


def sasl(bootstrap: str, mechanism: str = "PLAIN", password: str = PASSWORD) -> KafkaSettings:
    return load(
        KafkaSettings,
        {
            "kafka_bootstrap_servers": bootstrap,
            "kafka_security_protocol": "SASL_PLAINTEXT",
            "kafka_sasl_mechanism": mechanism,
            "kafka_sasl_username": USER,
            "kafka_sasl_password": password,
            "kafka_request_timeout_ms": 5_000,
        },
    )


def tls(**values: Any) -> KafkaSettings:
    return load(KafkaSettings, {"kafka_security_protocol": "SSL", **values})


def fresh_topics() -> TopicSettings:
    suffix = uuid.uuid4().hex[:10]
    return load(
        TopicSettings,
        {
            "raw_topic": f"sasl.raw.{suffix}",
            "dlq_topic": f"sasl.dlq.{suffix}",
            "state_topic": f"sasl.state.{suffix}",
            "topic_partitions": 1,
        },
    )


# -- the keyword arguments every client gets --------------------------------------------------


def test_plaintext_clients_get_what_they_always_got() -> None:
    kafka = load(KafkaSettings, {"kafka_bootstrap_servers": "k1:9092,k2:9092"})
    assert client_kwargs(kafka, "admin") == {
        "bootstrap_servers": "k1:9092,k2:9092",
        "client_id": "outgrow-braze-admin",
        "request_timeout_ms": 30_000,
        "security_protocol": "PLAINTEXT",
    }
    assert client_kwargs(kafka)["client_id"] == "outgrow-braze"


def test_sasl_ssl_clients_get_the_login_and_a_verifying_tls_context() -> None:
    kafka = load(
        KafkaSettings,
        {
            "kafka_security_protocol": "SASL_SSL",
            "kafka_sasl_mechanism": "SCRAM-SHA-512",
            "kafka_sasl_username": USER,
            "kafka_sasl_password": PASSWORD,
        },
    )
    kwargs = client_kwargs(kafka, "worker")
    assert kwargs["security_protocol"] == "SASL_SSL"
    assert (kwargs["sasl_mechanism"], kwargs["sasl_plain_username"]) == ("SCRAM-SHA-512", USER)
    assert kwargs["sasl_plain_password"] == PASSWORD
    context = kwargs["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname


def test_sasl_plaintext_has_no_tls_and_ssl_has_no_login() -> None:
    assert "ssl_context" not in client_kwargs(sasl("127.0.0.1:9092"))
    assert "sasl_mechanism" not in client_kwargs(tls())


# -- TLS files ---------------------------------------------------------------------------------


def _openssl(cwd: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _signed(cwd: Path, name: str, ca: str, san: str) -> None:
    _openssl(cwd, "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-noenc",
             "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}")  # fmt: skip
    (cwd / f"{name}.ext").write_text(f"subjectAltName={san}\n")
    _openssl(cwd, "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey",
             f"{ca}.key", "-CAcreateserial", "-days", "2", "-extfile", f"{name}.ext",
             "-out", f"{name}.pem")  # fmt: skip


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A test CA, a broker certificate it signed for `kafka.test`, a client pair and strangers."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command makes the test certificates")
    root = tmp_path_factory.mktemp("pki")
    for ca in ("ca", "stranger"):
        _openssl(root, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                 "-noenc", "-keyout", f"{ca}.key", "-out", f"{ca}.pem", "-days", "2",
                 "-subj", f"/CN={ca}", "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign")  # fmt: skip
    _signed(root, "broker", "ca", "DNS:kafka.test")
    _signed(root, "client", "ca", "DNS:client.test")
    _openssl(root, "pkey", "-in", "client.key", "-out", "locked.key", "-aes256",
             "-passout", "pass:locked")  # fmt: skip
    (root / "both.pem").write_text(
        (root / "client.pem").read_text() + (root / "client.key").read_text()
    )
    (root / "garbage.pem").write_text("not a certificate\n")
    return root


def test_ca_file_and_client_certificate_load(pki: Path) -> None:
    kafka = tls(
        kafka_ssl_ca_file=str(pki / "ca.pem"),
        kafka_ssl_cert_file=str(pki / "client.pem"),
        kafka_ssl_key_file=str(pki / "client.key"),
    )
    assert isinstance(client_kwargs(kafka)["ssl_context"], ssl.SSLContext)
    # A PEM file holding the certificate and its key needs no KAFKA_SSL_KEY_FILE.
    assert tls(kafka_ssl_cert_file=str(pki / "both.pem")).kafka_ssl_key_file is None


def test_no_hostname_check_still_verifies_the_chain(pki: Path) -> None:
    context = client_kwargs(
        tls(kafka_ssl_ca_file=str(pki / "ca.pem"), kafka_ssl_check_hostname=False)
    )["ssl_context"]
    assert not context.check_hostname
    assert context.verify_mode == ssl.CERT_REQUIRED


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"kafka_ssl_ca_file": "/no/such/ca.pem"}, "KAFKA_SSL_CA_FILE /no/such/ca.pem cannot be "
         "read as PEM certificates: No such file or directory"),
        ({"kafka_ssl_ca_file": "garbage.pem"}, "KAFKA_SSL_CA_FILE .* cannot be read as PEM"),
        ({"kafka_ssl_cert_file": "client.pem", "kafka_ssl_key_file": "stranger.key"},
         "KAFKA_SSL_CERT_FILE .* and KAFKA_SSL_KEY_FILE .* cannot be loaded"),
        ({"kafka_ssl_cert_file": "client.pem", "kafka_ssl_key_file": "locked.key"},
         "cannot be loaded: .*unencrypted key"),
        ({"kafka_ssl_cert_file": "client.pem"}, "KAFKA_SSL_CERT_FILE .* cannot be loaded"),
    ],
)  # fmt: skip
def test_unusable_tls_files_are_named_at_load_time(
    pki: Path, files: dict[str, str], message: str
) -> None:
    paths = {name: str(pki / path) for name, path in files.items()}
    with pytest.raises(ConfigError, match=message):
        tls(**paths)


async def _tls_server(pki: Path) -> asyncio.Server:
    """A TLS endpoint with the broker's certificate that hangs up after the handshake."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(pki / "broker.pem"), str(pki / "broker.key"))

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    return await asyncio.start_server(hang_up, "127.0.0.1", 0, ssl=context)


@pytest.mark.parametrize(
    ("ca", "check_hostname", "refusal"),
    [
        ("stranger.pem", True, "certificate verify failed: unable to get local issuer"),
        ("ca.pem", True, "certificate verify failed: IP address mismatch"),
        ("ca.pem", False, None),  # the handshake succeeds; the endpoint is just not Kafka
    ],
)
async def test_a_failed_tls_handshake_says_what_to_check(
    pki: Path, ca: str, check_hostname: bool, refusal: str | None
) -> None:
    server = await _tls_server(pki)
    port = server.sockets[0].getsockname()[1]
    kafka = tls(
        kafka_bootstrap_servers=f"127.0.0.1:{port}",
        kafka_ssl_ca_file=str(pki / ca),
        kafka_ssl_check_hostname=check_hostname,
        kafka_request_timeout_ms=2_000,
    )
    async with server:
        expected = KafkaUnavailable if refusal is None else KafkaRefused
        with pytest.raises(expected) as raised:
            await ensure_topics(kafka, fresh_topics())
    if refusal is not None:
        assert f"the TLS handshake with Kafka at 127.0.0.1:{port} failed: {refusal}" in str(
            raised.value
        )
        assert "KAFKA_SSL_CA_FILE, KAFKA_SSL_CHECK_HOSTNAME" in str(raised.value)


# -- SASL against a real broker ----------------------------------------------------------------


@pytest.fixture(scope="module")
def sasl_broker() -> Iterator[JarBroker]:
    """A broker of this module's own with a SASL_PLAINTEXT listener taking PLAIN and SCRAM."""
    with JarBroker(sasl_users={USER: PASSWORD}) as broker:
        yield broker


@pytest.fixture
def every_log_line(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Capture every level of every logger, aiokafka's wire-level debug lines included."""
    caplog.set_level(logging.DEBUG)
    for name in ("aiokafka", "kafka"):
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def _everything_logged(caplog: pytest.LogCaptureFixture) -> str:
    fields = [str(value) for record in caplog.records for value in record.__dict__.values()]
    return "\n".join([caplog.text, *fields])


async def _read_back(kafka: KafkaSettings, topics: TopicSettings) -> list[bytes | None]:
    """Read the raw topic through the replay command's consumer."""
    consumer = replay_consumer(kafka, topics)
    await consumer.start()
    try:
        partition = TopicPartition(topics.raw_topic, 0)
        consumer.assign([partition])
        batch = await consumer.getmany(partition, timeout_ms=5_000)
        return [record.value for record in batch.get(partition, [])]
    finally:
        await consumer.stop()


async def _worker_sees(kafka: KafkaSettings, topics: TopicSettings) -> bool:
    """Start the worker's group consumer and ask it for the topic list."""
    consumer = consumer_for(WorkerConfig(kafka, topics, load(WorkerSettings)))
    await consumer.start()
    try:
        return topics.raw_topic in await consumer.topics()
    finally:
        await consumer.stop()


@pytest.mark.parametrize("mechanism", MECHANISMS)
async def test_every_client_logs_in_with_the_right_password(
    sasl_broker: JarBroker, mechanism: str, every_log_line: pytest.LogCaptureFixture
) -> None:
    kafka = sasl(sasl_broker.sasl_bootstrap_servers, mechanism)
    topics = fresh_topics()
    assert sorted(await ensure_topics(kafka, topics)) == sorted(
        [topics.raw_topic, topics.dlq_topic, topics.state_topic]
    )
    async with Publisher(kafka, topics.raw_topic, MIB) as publisher:
        await publisher.wait_connected(30)
        delivery = await publisher.publish(b"user-1", b"lead", [], timeout_s=10)
        assert await publisher.not_ready_reason() is None
    async with Cluster(kafka) as cluster:
        partitions = await cluster.partitions(topics.raw_topic)
        assert await cluster.ends(partitions) == {0: delivery.offset + 1}
    assert await _read_back(kafka, topics) == [b"lead"]
    assert await _worker_sees(kafka, topics)
    assert PASSWORD not in _everything_logged(every_log_line)


@pytest.mark.parametrize(
    ("mechanism", "broker_says"),
    [
        ("PLAIN", "Invalid username or password"),
        ("SCRAM-SHA-256", "invalid credentials with SASL mechanism SCRAM-SHA-256"),
        ("SCRAM-SHA-512", "invalid credentials with SASL mechanism SCRAM-SHA-512"),
    ],
)
async def test_a_wrong_password_is_refused_clearly_and_never_shown(
    sasl_broker: JarBroker,
    mechanism: str,
    broker_says: str,
    every_log_line: pytest.LogCaptureFixture,
) -> None:
    kafka = sasl(sasl_broker.sasl_bootstrap_servers, mechanism, password=WRONG)
    refused = f"Kafka at {sasl_broker.sasl_bootstrap_servers} refused the {mechanism} login of "
    refused += f"KAFKA_SASL_USERNAME '{USER}'"
    with pytest.raises(KafkaRefused) as from_topics:
        await ensure_topics(kafka, fresh_topics())
    assert refused in str(from_topics.value)
    assert broker_says in str(from_topics.value)

    async with Publisher(kafka, "any-topic", MIB) as publisher:
        async with asyncio.timeout(10):  # refused at once, not after the minute it may wait
            with pytest.raises(KafkaRefused) as from_publisher:
                await publisher.wait_connected(60)
        reason = await publisher.not_ready_reason()
    assert refused in str(from_publisher.value)
    assert reason == "Kafka refuses the connection's credentials or TLS settings"
    assert any(refused in str(getattr(r, "error", "")) for r in every_log_line.records)

    with pytest.raises(KafkaRefused, match="refused"):
        async with Cluster(kafka):
            pass
    shown = [str(from_topics.value), str(from_publisher.value), _everything_logged(every_log_line)]
    assert not any(WRONG in text for text in shown)


@pytest.mark.parametrize(
    "command",
    [
        ["worker"],
        ["replay"],
        ["replay", "--dry-run"],
        ["dlq", "list"],
        ["dlq", "redrive"],
    ],
)
async def test_consuming_commands_refused_say_so_in_one_line_and_exit_2(
    sasl_broker: JarBroker,
    command: list[str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in {
        "KAFKA_BOOTSTRAP_SERVERS": sasl_broker.sasl_bootstrap_servers,
        "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
        "KAFKA_SASL_USERNAME": USER,
        "KAFKA_SASL_PASSWORD": WRONG,
        "KAFKA_REQUEST_TIMEOUT_MS": "5000",
        "WORKER_HOST": "127.0.0.1",
        "WORKER_PORT": str(free_port()),
        # Unused (Kafka refuses first), but without them the commands would not start at all.
        "BRAZE_REST_ENDPOINT": "http://127.0.0.1:9",
        "BRAZE_API_KEY": "unused-key",
    }.items():
        monkeypatch.setenv(name, value)
    topics = fresh_topics()
    monkeypatch.setenv("RAW_TOPIC", topics.raw_topic)
    monkeypatch.setenv("DLQ_TOPIC", topics.dlq_topic)
    async with asyncio.timeout(60):
        outcome = await run_cli(capsys, *command)
    assert outcome.code == 2, outcome.err  # a configuration error, as for `topics ensure`
    last = outcome.err.strip().splitlines()[-1]
    assert last.startswith(
        f"outgrow-braze: Kafka at {sasl_broker.sasl_bootstrap_servers} refused the "
        f"SCRAM-SHA-256 login of KAFKA_SASL_USERNAME '{USER}'"
    ), outcome.err
    assert "Traceback" not in outcome.err
    assert "Unable to bootstrap" not in outcome.err
    assert WRONG not in outcome.err + outcome.out


async def test_a_sasl_client_on_a_plain_listener_is_told_so(sasl_broker: JarBroker) -> None:
    kafka = sasl(sasl_broker.bootstrap_servers)
    with pytest.raises(KafkaRefused, match="takes no SASL login on that listener"):
        await ensure_topics(kafka, fresh_topics())


def test_the_password_is_never_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", USER)
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", PASSWORD)
    kafka = load(KafkaSettings)
    assert kafka.kafka_sasl_password is not None
    assert kafka.kafka_sasl_password.get_secret_value() == PASSWORD
    shown = [repr(kafka), str(kafka), kafka.model_dump_json(), f"{kafka}"]
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT")
    with pytest.raises(ConfigError) as misplaced:
        load(KafkaSettings)
    shown.append(str(misplaced.value))
    assert "KAFKA_SASL_PASSWORD" in str(misplaced.value)
    assert not any(PASSWORD in text for text in shown)


def test_aiokafka_debug_lines_do_not_carry_sasl_tokens(caplog: pytest.LogCaptureFixture) -> None:
    class SaslAuthenticateRequest_v1:  # named like the aiokafka struct it stands for
        def __repr__(self) -> str:
            return f"SaslAuthenticateRequest_v1(sasl_auth_bytes=b'\\x00{USER}\\x00{PASSWORD}')"

    client_kwargs(sasl("127.0.0.1:9092"))  # a SASL client installs the mask
    caplog.set_level(logging.DEBUG, logger="aiokafka.conn")
    logging.getLogger("aiokafka.conn").debug("Request %d: %s", 7, SaslAuthenticateRequest_v1())
    assert "Request 7: <SaslAuthenticateRequest_v1, not shown>" in caplog.text
    assert PASSWORD not in caplog.text
