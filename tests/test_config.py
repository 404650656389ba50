"""Settings: environment first, overrides on top, every mistake named by its variable."""

from __future__ import annotations

import re

import pytest

from connector.config import (
    ALL_GROUPS,
    KafkaSettings,
    ReceiverSettings,
    TopicSettings,
    WorkerSettings,
    describe_fields,
    load,
    require_braze,
    retired_settings,
    split_list,
)
from connector.errors import ConfigError


def test_defaults_match_the_documented_names(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "RAW_TOPIC", "DLQ_TOPIC", "RECEIVER_PORT"):
        monkeypatch.delenv(name, raising=False)
    topics = load(TopicSettings)
    assert (topics.raw_topic, topics.dlq_topic) == ("outgrow.events.raw", "outgrow.events.dlq")
    assert topics.topic_partitions == 12
    assert topics.topic_retention_ms == 14 * 24 * 3600 * 1000
    assert load(ReceiverSettings).receiver_port == 8080
    assert load(ReceiverSettings).receiver_max_body_bytes == 1024 * 1024


def test_environment_is_read_and_overrides_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "k1:9092,k2:9092")
    monkeypatch.setenv("RECEIVER_PORT", "9000")
    assert load(KafkaSettings).kafka_bootstrap_servers == "k1:9092,k2:9092"
    assert load(ReceiverSettings, {"receiver_port": "9100"}).receiver_port == 9100


def test_settings_are_frozen() -> None:
    settings = load(ReceiverSettings)
    with pytest.raises(Exception, match="frozen"):
        settings.receiver_port = 1  # type: ignore[misc]


def test_invalid_values_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECEIVER_PORT", "eighty")
    with pytest.raises(ConfigError, match="RECEIVER_PORT"):
        load(ReceiverSettings)
    with pytest.raises(ConfigError, match="TOPIC_PARTITIONS"):
        load(TopicSettings, {"topic_partitions": 0})


def test_braze_endpoint_and_key_have_no_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("BRAZE_REST_ENDPOINT", "BRAZE_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match="BRAZE_REST_ENDPOINT and BRAZE_API_KEY are not"):
        require_braze(load(WorkerSettings))
    endpoint = {"braze_rest_endpoint": "https://rest.fra-01.braze.eu"}
    with pytest.raises(ConfigError, match=r"\(BRAZE_API_KEY is not\)"):
        require_braze(load(WorkerSettings, {**endpoint, "braze_api_key": "  "}))
    chosen = load(WorkerSettings, {**endpoint, "braze_api_key": "a-key"})
    assert require_braze(chosen) is chosen


def test_retired_settings_still_set_are_named_with_why(monkeypatch: pytest.MonkeyPatch) -> None:
    assert retired_settings({"RAW_TOPIC": "x"}) == {}
    found = retired_settings({"record_key_paths": "email", "RAW_TOPIC": "x"})
    assert list(found) == ["RECORD_KEY_PATHS"]
    assert "MAPPING_FILE" in found["RECORD_KEY_PATHS"]
    monkeypatch.setenv("RECORD_LEAD_ID_PATHS", "id")
    assert "RECORD_LEAD_ID_PATHS" in retired_settings()
    # No longer a setting: neither read nor refused.
    assert not hasattr(load(ReceiverSettings), "record_lead_id_paths")


def test_split_list_trims_and_drops_blanks() -> None:
    assert split_list(" a, b ,,c ") == ["a", "b", "c"]
    assert split_list("") == []


def test_every_setting_is_described_and_in_the_readme() -> None:
    with open("README.md", encoding="utf-8") as readme:
        text = readme.read()
    for group in ALL_GROUPS:
        for env, default, meaning in describe_fields(group):
            assert meaning, f"{env} has no description"
            assert f"| `{env}` | `{default}` |" in text, f"README lacks {env} with its default"


def test_the_readme_lists_no_setting_that_is_not_one() -> None:
    with open("README.md", encoding="utf-8") as readme:
        text = readme.read()
    reference = text.split("\n## Configuration reference\n", 1)[1].split("\n#", 1)[0]
    rows = re.findall(r"^\| `([A-Z][A-Z0-9_]+)` \| `[^`]*` \|", reference, re.MULTILINE)
    assert "RAW_TOPIC" in rows
    described = {env for group in ALL_GROUPS for env, _, _ in describe_fields(group)}
    assert sorted(set(rows) - described) == []


SECURITY_VARIABLES = (
    "KAFKA_SECURITY_PROTOCOL",
    "KAFKA_SASL_MECHANISM",
    "KAFKA_SASL_USERNAME",
    "KAFKA_SASL_PASSWORD",
    "KAFKA_SSL_CA_FILE",
    "KAFKA_SSL_CERT_FILE",
    "KAFKA_SSL_KEY_FILE",
    "KAFKA_SSL_CHECK_HOSTNAME",
)
SASL = {
    "kafka_security_protocol": "SASL_SSL",
    "kafka_sasl_mechanism": "SCRAM-SHA-256",
    "kafka_sasl_username": "outgrow",
    "kafka_sasl_password": "s3cret-pass",
}


@pytest.fixture
def no_kafka_security(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in SECURITY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_kafka_security_defaults_to_plaintext(no_kafka_security: pytest.MonkeyPatch) -> None:
    kafka = load(KafkaSettings)
    assert kafka.kafka_security_protocol == "PLAINTEXT"
    assert not kafka.uses_sasl and not kafka.uses_tls
    assert (
        kafka.kafka_sasl_mechanism is kafka.kafka_sasl_password is kafka.kafka_ssl_ca_file is None
    )
    assert kafka.kafka_ssl_check_hostname


def test_kafka_security_is_read_from_its_variables(no_kafka_security: pytest.MonkeyPatch) -> None:
    values = ("sasl_ssl", "scram-sha-512", "outgrow", "s3cret-pass", "", "", "", "false")
    for name, value in zip(SECURITY_VARIABLES, values, strict=True):
        no_kafka_security.setenv(name, value)
    kafka = load(KafkaSettings)
    assert kafka.kafka_security_protocol == "SASL_SSL"
    assert (kafka.kafka_sasl_mechanism, kafka.kafka_sasl_username) == ("SCRAM-SHA-512", "outgrow")
    assert kafka.kafka_sasl_password is not None
    assert kafka.kafka_sasl_password.get_secret_value() == "s3cret-pass"
    assert kafka.kafka_ssl_ca_file is None  # blank is unset: the system's CAs
    assert kafka.uses_sasl and kafka.uses_tls and not kafka.kafka_ssl_check_hostname
    assert "s3cret-pass" not in repr(kafka)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"kafka_security_protocol": "SASL_PLAINTEXT"},
            "KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT needs KAFKA_SASL_MECHANISM, "
            "KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD$",
        ),
        ({**SASL, "kafka_sasl_password": "  "}, "SASL_SSL needs KAFKA_SASL_PASSWORD$"),
        (
            {"kafka_sasl_mechanism": "PLAIN"},
            "KAFKA_SASL_MECHANISM given, but KAFKA_SECURITY_PROTOCOL=PLAINTEXT does not use SASL",
        ),
        ({**SASL, "kafka_security_protocol": "SSL"}, "KAFKA_SASL_PASSWORD given, but .*=SSL"),
        (
            {"kafka_ssl_ca_file": "/etc/kafka/ca.pem"},
            "KAFKA_SSL_CA_FILE given, but KAFKA_SECURITY_PROTOCOL=PLAINTEXT does not use TLS",
        ),
        (
            {**SASL, "kafka_security_protocol": "SASL_PLAINTEXT", "kafka_ssl_cert_file": "c.pem"},
            "KAFKA_SSL_CERT_FILE given, but .*=SASL_PLAINTEXT does not use TLS",
        ),
        (
            {"kafka_security_protocol": "SSL", "kafka_ssl_key_file": "client.key"},
            "KAFKA_SSL_KEY_FILE needs KAFKA_SSL_CERT_FILE",
        ),
        (
            {"kafka_security_protocol": "SSL", "kafka_ssl_ca_file": "/no/such/ca.pem"},
            "KAFKA_SSL_CA_FILE /no/such/ca.pem cannot be read as PEM certificates",
        ),
        ({"kafka_security_protocol": "TLS"}, "KAFKA_SECURITY_PROTOCOL: Input should be"),
        ({**SASL, "kafka_sasl_mechanism": "GSSAPI"}, "KAFKA_SASL_MECHANISM: Input should be"),
    ],
)
def test_incoherent_kafka_security_is_refused_at_load_time(
    no_kafka_security: pytest.MonkeyPatch, values: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as refused:
        load(KafkaSettings, values)
    assert "s3cret-pass" not in str(refused.value)
