"""The `outgrow-braze` command line: what each command offers, --version, config, Braze."""

from __future__ import annotations

import contextlib
import importlib.metadata
import io
import re

import pytest

from connector import cli
from connector import config as cfg
from outgrow_braze_dev.settings import SandboxSettings
from tests.cli_support import run_cli
from tests.kafka_support import fresh_topics
from tests.test_config import SECURITY_VARIABLES

KAFKA_CLIENT = {
    "KAFKA_BOOTSTRAP_SERVERS",
    "KAFKA_CLIENT_ID",
    "KAFKA_REQUEST_TIMEOUT_MS",
    *SECURITY_VARIABLES,
}
KAFKA_PRODUCER = KAFKA_CLIENT | {"KAFKA_LINGER_MS"}
TOPICS = {
    "RAW_TOPIC",
    "DLQ_TOPIC",
    "STATE_TOPIC",
    "TOPIC_PARTITIONS",
    "TOPIC_REPLICATION_FACTOR",
    "TOPIC_MIN_INSYNC_REPLICAS",
    "TOPIC_RETENTION_MS",
    "TOPIC_MAX_MESSAGE_BYTES",
}
RECEIVER = {
    "RECEIVER_HOST",
    "RECEIVER_PORT",
    "WEBHOOK_BASIC_AUTH",
    "WEBHOOK_TOKENS",
    "RECEIVER_INSECURE_NO_AUTH",
    "RECEIVER_MAX_BODY_BYTES",
    "RECEIVER_PUBLISH_TIMEOUT_S",
    "RECEIVER_MAX_IN_FLIGHT",
    "RECEIVER_MAX_IN_FLIGHT_BYTES",
    "RECEIVER_CLIENT_TIMEOUT_S",
    "RECEIVER_RETRY_AFTER_S",
    "RECEIVER_ENSURE_TOPICS",
    "RECEIVER_SHUTDOWN_DELAY_S",
    "RECEIVER_DRAIN_TIMEOUT_S",
    "MAPPING_FILE",  # its identity rules key the records
}
# What delivering to Braze reads: the worker, replay and redrive.
DELIVERY = {
    "BRAZE_REST_ENDPOINT",
    "BRAZE_API_KEY",
    "MAPPING_FILE",
    "BRAZE_RATE_LIMIT",
    "BRAZE_MAX_OBJECTS",
    "BRAZE_LEGACY_OBJECT_LIMIT",
    "BRAZE_TIMEOUT_S",
    "BRAZE_CA_FILE",
    "WORKER_BATCH_WINDOW_MS",
    "WORKER_MAX_REQUESTS_IN_FLIGHT",
    "WORKER_MAX_PENDING_RECORDS",
    "WORKER_DRAIN_TIMEOUT_S",
    "WORKER_RETRY_MAX_BACKOFF_S",
    "WORKER_HALT_PROBE_S",
    "WORKER_OUTAGE_WARN_S",
    "STATE_DIR",
    "STATE_CACHE_MB",
    "STATE_EVENT_WINDOW_DAYS",
}
# What only the worker service reads besides: its health port, its group, commits, its share.
WORKER = DELIVERY | {
    "BRAZE_RATE_SHARE",
    "WORKER_PORT",
    "WORKER_HOST",
    "CONSUMER_GROUP",
    "WORKER_INSTANCE_ID",
    "WORKER_SESSION_TIMEOUT_S",
    "WORKER_COMMIT_INTERVAL_S",
    "WORKER_FETCH_MAX_BYTES",
}
WORKER_TOPICS = {"RAW_TOPIC", "DLQ_TOPIC", "STATE_TOPIC", "TOPIC_MAX_MESSAGE_BYTES"}

# Each command's settings options: exactly those its code reads.
OPTIONS: dict[tuple[str, ...], set[str]] = {
    ("receiver",): KAFKA_PRODUCER | TOPICS | RECEIVER,  # all topics: RECEIVER_ENSURE_TOPICS
    ("worker",): KAFKA_PRODUCER | WORKER_TOPICS | WORKER,
    ("topics", "ensure"): KAFKA_CLIENT | TOPICS,
    ("mapping", "check"): set(),
    ("verify",): {"BRAZE_REST_ENDPOINT", "BRAZE_API_KEY", "BRAZE_TIMEOUT_S", "BRAZE_CA_FILE"},
    ("status",): KAFKA_CLIENT
    | {"RAW_TOPIC", "DLQ_TOPIC", "STATE_TOPIC", "CONSUMER_GROUP", "WORKER_PORT", "RECEIVER_PORT"}
    | {"BRAZE_CA_FILE"},
    ("offsets", "reset"): KAFKA_CLIENT | {"RAW_TOPIC", "CONSUMER_GROUP"},
    ("replay",): KAFKA_PRODUCER | WORKER_TOPICS | DELIVERY,
    ("dlq", "list"): KAFKA_CLIENT | {"DLQ_TOPIC", "TOPIC_MAX_MESSAGE_BYTES"},
    ("dlq", "show"): KAFKA_CLIENT | {"DLQ_TOPIC", "TOPIC_MAX_MESSAGE_BYTES", "MAPPING_FILE"},
    ("dlq", "redrive"): KAFKA_PRODUCER | WORKER_TOPICS | DELIVERY,
    ("local-kafka",): set(),
    ("bench",): set(),
    ("chaos",): set(),
    # `config` shows every setting, as any command would take it; logging's are top-level.
    ("config",): {
        cfg.env_name(name)
        for group in cfg.ALL_GROUPS
        if group is not cfg.LogSettings
        for name in group.model_fields
    },
}


def help_text(*argv: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exited:
        cli.build_parser().parse_args([*argv, "--help"])
    assert exited.value.code == 0
    return out.getvalue()


def offered(*argv: str) -> set[str]:
    """The settings a command's --help offers as options (each says `[env NAME; default ...]`)."""
    return set(re.findall(r"\[env\s+([A-Z0-9_]+);", help_text(*argv)))


@pytest.mark.parametrize("command", sorted(OPTIONS), ids=" ".join)
def test_each_command_offers_exactly_the_settings_it_reads(command: tuple[str, ...]) -> None:
    assert offered(*command) == OPTIONS[command]


def test_every_command_is_in_the_table() -> None:
    listed = set(re.findall(r"^    ([a-z-]+)\s", help_text(), re.MULTILINE))
    verbs = {name for command in OPTIONS for name in command[:1]}
    assert listed - {"sandbox"} == verbs  # the sandbox's settings move with it (devtools)
    assert offered() == {"LOG_LEVEL", "LOG_FORMAT"}


def test_sandbox_offers_its_own_settings() -> None:
    assert offered("sandbox") == {cfg.env_name(name) for name in SandboxSettings.model_fields}


def test_version_is_the_installed_distribution(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["--version"])
    assert exited.value.code == 0
    version = importlib.metadata.version("outgrow-braze")
    assert capsys.readouterr().out.strip() == f"outgrow-braze {version}"


def config_rows(out: str) -> dict[str, tuple[str, str]]:
    rows = {}
    for line in out.splitlines()[2:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows[cells[0].strip("`")] = (cells[1].strip("`"), cells[2])
    return rows


def test_config_shows_the_values_in_effect_and_where_they_came_from(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("RAW_TOPIC", "BRAZE_API_KEY", "BRAZE_REST_ENDPOINT", "WORKER_PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DLQ_TOPIC", "from-env.dlq")
    monkeypatch.setenv("BRAZE_API_KEY", "s3cret-braze-key")
    monkeypatch.setenv("RECEIVER_PORT", "9000")
    code = cli.main(["config", "--receiver-port", "9100", "--raw-topic", "from-option.raw"])
    out = capsys.readouterr().out
    assert code == 0
    rows = config_rows(out)
    assert rows["RAW_TOPIC"] == ("from-option.raw", "option")
    assert rows["RECEIVER_PORT"] == ("9100", "option")  # the option wins over the environment
    assert rows["DLQ_TOPIC"] == ("from-env.dlq", "env")
    assert rows["WORKER_PORT"] == ("8081", "default")
    assert rows["BRAZE_API_KEY"] == ("**********", "env")
    assert rows["BRAZE_REST_ENDPOINT"] == ("unset", "default")
    assert "s3cret-braze-key" not in out
    every = {cfg.env_name(n) for group in cfg.ALL_GROUPS for n in group.model_fields}
    assert set(rows) == every


# Nothing listens on port 9: each command must stop before it connects to anything.
NOWHERE = ["--kafka-bootstrap-servers", "127.0.0.1:9"]
BRAZE_COMMANDS = {
    "worker": ["worker", *NOWHERE],
    "replay": ["replay", *NOWHERE],
    "dlq redrive": ["dlq", "redrive", *NOWHERE],
    "verify": ["verify", "--email", "jane@example.com"],
}


@pytest.mark.parametrize("command", BRAZE_COMMANDS.values(), ids=BRAZE_COMMANDS)
@pytest.mark.parametrize("given", [{}, {"BRAZE_API_KEY": "a-key"}])
def test_commands_that_talk_to_braze_need_its_endpoint_and_key(
    command: list[str],
    given: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("BRAZE_REST_ENDPOINT", "BRAZE_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    for name, value in given.items():
        monkeypatch.setenv(name, value)
    code = cli.main(command)
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("outgrow-braze: BRAZE_REST_ENDPOINT and BRAZE_API_KEY must both be set")
    missing = "BRAZE_REST_ENDPOINT is not" if given else "BRAZE_REST_ENDPOINT and BRAZE_API_KEY are"
    assert missing in err
    for _, endpoint in cfg.BRAZE_REST_ENDPOINTS:
        assert endpoint in err
    assert "https://rest.fra-01.braze.eu" in err and "https://rest.iad-01.braze.com" in err
    assert "a-key" not in err


async def test_a_dry_run_needs_no_braze_settings(
    bootstrap_servers: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("BRAZE_REST_ENDPOINT", "BRAZE_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    topics = await fresh_topics(bootstrap_servers)
    where = ["--kafka-bootstrap-servers", bootstrap_servers, "--raw-topic", topics.raw]
    outcome = await run_cli(capsys, "replay", "--dry-run", *where)
    assert outcome.code == 0, outcome.err
    assert "replaying 0 records" in outcome.err
