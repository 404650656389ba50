"""Settings: environment first, overrides on top, every mistake named by its variable."""

from __future__ import annotations

import pytest

from connector.config import (
    ALL_GROUPS,
    KafkaSettings,
    ReceiverSettings,
    TopicSettings,
    describe_fields,
    load,
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
    with pytest.raises(ConfigError, match="RECORD_KEY_PATHS"):
        load(ReceiverSettings, {"record_key_paths": " , "})


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
