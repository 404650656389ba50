"""Settings: read once from the environment (or command-line overrides) into frozen objects.

Each field's name is its environment variable in lower case, so `RAW_TOPIC` is `raw_topic` and
`--raw-topic` on the command line. Nothing else in the package reads `os.environ`.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Iterator, Mapping
from typing import Any, Literal, TypeVar

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, SettingsConfigDict

from connector.errors import ConfigError
from connector.kafka_tls import client_context

MIB = 1024 * 1024
DAY_MS = 24 * 3600 * 1000

# Settings no longer read, and why: a service that finds one still set says so once, at start.
RETIRED = {
    "RECORD_KEY_PATHS": "the receiver keys each record by the user's identity as the identity "
    "rules of MAPPING_FILE compute it",
    "RECORD_LEAD_ID_PATHS": "a lead no identity rule matches is keyed by the lead id at "
    "MAPPING_FILE's lead_id_from",
}

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
_SASL_FIELDS = ("kafka_sasl_mechanism", "kafka_sasl_username", "kafka_sasl_password")
_TLS_FIELDS = ("kafka_ssl_ca_file", "kafka_ssl_cert_file", "kafka_ssl_key_file")


class _Settings(BaseSettings):
    model_config = SettingsConfigDict(frozen=True, extra="ignore", case_sensitive=False)


# What every settings group derives from, the development tools' (outside this package) too.
Settings = _Settings


class KafkaSettings(_Settings):
    """How to reach the Kafka cluster."""

    kafka_bootstrap_servers: str = Field(
        "127.0.0.1:9092", description="Comma-separated host:port list of Kafka brokers."
    )
    kafka_client_id: str = Field("outgrow-braze", description="Client id sent to Kafka.")
    kafka_request_timeout_ms: int = Field(
        30_000, ge=1_000, description="Kafka request timeout of the producer and admin client."
    )
    kafka_linger_ms: int = Field(
        2, ge=0, le=1_000, description="How long the producer waits to fill a batch."
    )
    kafka_security_protocol: SecurityProtocol = Field(
        "PLAINTEXT",
        description="`PLAINTEXT`, `SSL` (TLS), `SASL_PLAINTEXT` or `SASL_SSL` (SASL over TLS).",
    )
    kafka_sasl_mechanism: SaslMechanism | None = Field(
        None, description="`PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`; required with `SASL_*`."
    )
    kafka_sasl_username: str | None = Field(None, description="SASL user; required with `SASL_*`.")
    kafka_sasl_password: SecretStr | None = Field(
        None, description="SASL user's password; required with `SASL_*`; never logged."
    )
    kafka_ssl_ca_file: str | None = Field(
        None, description="PEM CAs that signed the brokers' certificates; unset: the system's CAs."
    )
    kafka_ssl_cert_file: str | None = Field(
        None, description="PEM client certificate for mutual TLS (may hold its key too)."
    )
    kafka_ssl_key_file: str | None = Field(
        None, description="Unencrypted PEM key of KAFKA_SSL_CERT_FILE, unless that file holds it."
    )
    kafka_ssl_check_hostname: bool = Field(
        True,
        description="Check that a broker's certificate names its host; `false` still checks CAs.",
    )

    @field_validator("kafka_security_protocol", "kafka_sasl_mechanism", mode="before")
    @classmethod
    def _upper_case(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator(*_SASL_FIELDS, *_TLS_FIELDS, mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        # Deploy manifests often set a variable to "" rather than leave it out.
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        return None if isinstance(text, str) and not text.strip() else value

    @model_validator(mode="after")
    def _security_is_coherent(self) -> KafkaSettings:
        problems = _security_problems(self)
        if problems:
            raise PydanticCustomError("kafka_security", "; ".join(problems))
        return self

    @property
    def uses_sasl(self) -> bool:
        """True when clients authenticate with SASL."""
        return self.kafka_security_protocol.startswith("SASL_")

    @property
    def uses_tls(self) -> bool:
        """True when connections to brokers are encrypted with TLS."""
        return self.kafka_security_protocol in ("SSL", "SASL_SSL")

    def tls_context(self) -> ssl.SSLContext:
        """Build the clients' TLS context from the `KAFKA_SSL_*` files; ConfigError if unusable."""
        return client_context(
            self.kafka_ssl_ca_file,
            self.kafka_ssl_cert_file,
            self.kafka_ssl_key_file,
            self.kafka_ssl_check_hostname,
        )


def _security_problems(kafka: KafkaSettings) -> list[str]:
    """Say what is wrong with the Kafka security settings taken together; empty if nothing."""
    protocol = f"KAFKA_SECURITY_PROTOCOL={kafka.kafka_security_protocol}"
    sasl = [env_name(name) for name in _SASL_FIELDS if getattr(kafka, name) is not None]
    tls = [env_name(name) for name in _TLS_FIELDS if getattr(kafka, name) is not None]
    problems = []
    if kafka.uses_sasl and len(sasl) < len(_SASL_FIELDS):
        missing = [env_name(name) for name in _SASL_FIELDS if getattr(kafka, name) is None]
        problems.append(f"{protocol} needs {_and(missing)}")
    if sasl and not kafka.uses_sasl:
        problems.append(
            f"{_and(sasl)} given, but {protocol} does not use SASL: "
            "set it to SASL_SSL or SASL_PLAINTEXT, or remove them"
        )
    if tls and not kafka.uses_tls:
        problems.append(
            f"{_and(tls)} given, but {protocol} does not use TLS: "
            "set it to SSL or SASL_SSL, or remove them"
        )
    if kafka.kafka_ssl_key_file and not kafka.kafka_ssl_cert_file:
        problems.append("KAFKA_SSL_KEY_FILE needs KAFKA_SSL_CERT_FILE")
    if kafka.uses_tls and not problems:
        problems.extend(_tls_problems(kafka))
    return problems


def _tls_problems(kafka: KafkaSettings) -> list[str]:
    try:
        kafka.tls_context()
    except ConfigError as exc:
        return [str(exc)]
    return []


def _and(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


class TopicSettings(_Settings):
    """Names and shape of the connector's topics."""

    raw_topic: str = Field("outgrow.events.raw", description="Topic of raw Outgrow submissions.")
    dlq_topic: str = Field("outgrow.events.dlq", description="Dead-letter topic.")
    state_topic: str = Field(
        "outgrow.braze.state",
        description="Compacted topic of what Braze confirmed, per user (the delivery state).",
    )
    topic_partitions: int = Field(
        12, ge=1, le=10_000, description="Partitions of topics created by `topics ensure`."
    )
    topic_replication_factor: int = Field(
        -1,
        description="Replication factor of created topics; -1: 3, or the broker count if fewer.",
    )
    topic_min_insync_replicas: int | None = Field(
        None,
        ge=1,
        description="`min.insync.replicas` of created topics; unset: 2, or 1 below 3 replicas.",
    )
    topic_retention_ms: int = Field(
        14 * DAY_MS, ge=-1, description="`retention.ms` of created topics (14 days, for replay)."
    )
    topic_max_message_bytes: int = Field(
        2 * MIB, ge=64 * 1024, description="`max.message.bytes` of created topics."
    )


class ReceiverSettings(_Settings):
    """The webhook receiver's HTTP side."""

    receiver_host: str = Field("0.0.0.0", description="Address the receiver listens on.")
    receiver_port: int = Field(8080, ge=0, le=65_535, description="Port the receiver listens on.")
    webhook_basic_auth: SecretStr | None = Field(
        None, description="Accepted HTTP Basic credentials, `user:password`, comma-separated."
    )
    webhook_tokens: SecretStr | None = Field(
        None, description="Accepted `?token=` values, comma-separated, 16 characters or more."
    )
    receiver_insecure_no_auth: bool = Field(
        False, description="Start without credentials (development only)."
    )
    receiver_max_body_bytes: int = Field(
        MIB, ge=1_024, le=16 * MIB, description="Largest body accepted; larger ones get 413."
    )
    receiver_publish_timeout_s: float = Field(
        5.0, gt=0, le=120, description="How long a post waits for Kafka before it gets 503."
    )
    receiver_max_in_flight: int = Field(
        2_000, ge=1, description="Posts handled at once; more are shed with 503."
    )
    receiver_max_in_flight_bytes: int = Field(
        64 * MIB,
        ge=1_024,
        description="Bytes of bodies handled at once (by Content-Length, or as read); a post "
        "beyond is shed with 503.",
    )
    receiver_client_timeout_s: float = Field(
        30.0,
        gt=0,
        le=3_600,
        description="How long a client may take to send its headers, or its body; then it is "
        "cut off. Idle keep-alive connections close after it too.",
    )
    receiver_retry_after_s: int = Field(
        5, ge=1, description="`Retry-After` seconds sent with 503 answers."
    )
    receiver_ensure_topics: bool = Field(
        False, description="Create the raw and dead-letter topics at start-up if missing."
    )
    receiver_shutdown_delay_s: float = Field(
        0.0, ge=0, description="On SIGTERM, keep serving this long with readiness false."
    )
    receiver_drain_timeout_s: float = Field(
        20.0, gt=0, description="On SIGTERM, how long in-flight posts may take to finish."
    )

    @model_validator(mode="after")
    def _one_body_fits(self) -> ReceiverSettings:
        if self.receiver_max_in_flight_bytes < self.receiver_max_body_bytes:
            raise PydanticCustomError(
                "receiver_bytes",
                "RECEIVER_MAX_IN_FLIGHT_BYTES must be at least RECEIVER_MAX_BODY_BYTES "
                f"({self.receiver_max_body_bytes}), or the largest body could never be taken",
            )
        return self


class LogSettings(_Settings):
    """Logging."""

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Lowest level logged."
    )
    log_format: Literal["json", "text"] = Field(
        "json", description="`json` lines for machines, `text` for people."
    )


class WorkerSettings(_Settings):
    """The delivery worker: Braze, its budget, batching and the consumer group."""

    # No defaults: a worker must never deliver to a Braze nobody chose (see require_braze).
    braze_rest_endpoint: str = Field(
        "",
        description="REST endpoint of the workspace's Braze instance, e.g. "
        "`https://rest.iad-01.braze.com`; required to deliver.",
    )
    braze_api_key: SecretStr = Field(
        SecretStr(""),
        description="Braze REST API key with `users.track`; required to deliver; never logged.",
    )
    mapping_file: str | None = Field(
        None,
        description="Mapping file (YAML) of the worker, replay, redrive and the receiver (whose "
        "record keys are its identities); unset uses the mapping shipped with the package.",
    )
    braze_rate_limit: str = Field(
        "3000/3s", description="The workspace's `/users/track` budget, requests per period."
    )
    braze_rate_share: float = Field(
        1.0, gt=0, le=1, description="Fraction of that budget this deployment may use."
    )
    braze_max_objects: int = Field(
        75, ge=1, le=75, description="Objects per `/users/track` request (all arrays together)."
    )
    braze_legacy_object_limit: bool = Field(
        False, description="Count BRAZE_MAX_OBJECTS per array (legacy Braze rate limits)."
    )
    braze_timeout_s: float = Field(10.0, gt=0, description="Timeout of one Braze request.")
    braze_ca_file: str | None = Field(
        None,
        description="PEM CAs trusted besides the system's by every HTTP client (Braze, `verify`, "
        "`status`), e.g. a TLS-inspecting egress proxy's.",
    )
    worker_port: int = Field(8081, ge=0, le=65_535, description="Port of health and metrics.")
    worker_host: str = Field("0.0.0.0", description="Address of health and metrics.")
    consumer_group: str = Field("outgrow-braze-worker", description="Kafka consumer group.")
    worker_instance_id: str | None = Field(
        None,
        description="Static group membership: a restart with the same id within "
        "WORKER_SESSION_TIMEOUT_S takes its partitions back without a rebalance (the pod name).",
    )
    # Kafka's own bounds (group.min/max.session.timeout.ms) are 6 s and 30 min by default.
    worker_session_timeout_s: float = Field(
        30.0,
        ge=6,
        le=1_800,
        description="How long Kafka waits for a silent worker before it moves its partitions.",
    )
    worker_batch_window_ms: int = Field(
        20, ge=0, le=5_000, description="How long records wait to be coalesced into a request."
    )
    # Requests per second are at most this over Braze's latency. A request takes its slot of the
    # budget before it is packed: only requests being sent or retried count.
    worker_max_requests_in_flight: int = Field(
        128, ge=1, le=1_000, description="Braze requests sent concurrently by one worker."
    )
    # Each pending record costs a few KB (its consumed value and headers, its mapped objects):
    # the default keeps a worker under 200 MB, and above the records 128 full requests in
    # flight hold (9,600) once fetching resumes at 80 %, so that packing never runs dry.
    worker_max_pending_records: int = Field(
        15_000, ge=100, description="Records held in memory before fetching pauses."
    )
    worker_fetch_max_bytes: int = Field(
        4 * MIB,
        ge=64 * 1024,
        description="Most bytes one fetch from Kafka brings (a partition's largest record"
        " still comes whole).",
    )
    worker_commit_interval_s: float = Field(
        1.0, gt=0, description="How often finished offsets are committed."
    )
    worker_drain_timeout_s: float = Field(
        25.0, gt=0, description="On SIGTERM or revoke, how long in-flight requests may finish."
    )
    worker_retry_max_backoff_s: float = Field(
        30.0, gt=0, description="Longest pause between retries of one Braze request."
    )
    worker_halt_probe_s: float = Field(
        10.0, gt=0, description="While Braze refuses the key, how often to try again."
    )
    worker_outage_warn_s: float = Field(
        60.0,
        gt=0,
        description="After this long without an answer from Braze (no connection, timeouts,"
        " 5xx), warn once a minute and report not ready until it answers again.",
    )

    state_dir: str | None = Field(
        None,
        description="Directory of the local delivery-state store, rebuilt from STATE_TOPIC when"
        " partitions are assigned; unset: a temporary directory removed on exit.",
    )
    state_cache_mb: int = Field(
        64,
        ge=1,
        le=65_536,
        description="Memory the delivery-state store keeps of it; the rest is on disk.",
    )
    state_event_window_days: float = Field(
        30.0,
        gt=0,
        description="How long an event's de-duplication key is kept (beyond the raw topic's"
        " retention, so that a full replay is covered).",
    )

    @field_validator("braze_api_key")
    @classmethod
    def _key_fits_a_header(cls, value: SecretStr) -> SecretStr:
        # aiohttp refuses such a header on every request; a key file's last newline is typical.
        if not value.get_secret_value().isprintable():
            raise PydanticCustomError("header", "holds a line break or another control character")
        return value

    @field_validator("braze_ca_file", mode="before")
    @classmethod
    def _blank_ca_file_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _ca_file_loads(self) -> WorkerSettings:
        if self.braze_ca_file is None:
            return self
        # Imported here: it loads aiohttp, which most commands never need.
        from connector.http_client import tls_context

        try:
            tls_context(self.braze_ca_file)
        except ConfigError as exc:
            raise PydanticCustomError("braze_ca_file", str(exc)) from None
        return self


SettingsT = TypeVar("SettingsT", bound=_Settings)


def load(cls: type[SettingsT], overrides: Mapping[str, Any] | None = None) -> SettingsT:
    """Read one settings group from the environment, with explicit overrides on top."""
    try:
        return cls(**dict(overrides or {}))
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        name = ".".join(str(part) for part in error["loc"]).upper()
        # A check across fields has no location; its message names the variables itself.
        problems.append(f"{name}: {error['msg']}" if name else error["msg"])
    return "invalid settings: " + "; ".join(problems)


def retired_settings(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The retired settings still set in the environment (by default the process's), with why
    each is no longer read."""
    names = {name.upper() for name in (os.environ if environ is None else environ)}
    return {name: why for name, why in RETIRED.items() if name in names}


def split_list(value: str) -> list[str]:
    """Split a comma-separated setting into its non-empty, trimmed items."""
    return [item.strip() for item in value.split(",") if item.strip()]


def env_name(field: str) -> str:
    """Name of the environment variable behind a settings field."""
    return field.upper()


def describe_fields(cls: type[_Settings]) -> Iterator[tuple[str, str, str]]:
    """Yield (environment variable, default, meaning) for each field of a settings group."""
    for name, field in cls.model_fields.items():
        yield env_name(name), shown(field.default), field.description or ""


def in_effect(
    cls: type[_Settings], overrides: Mapping[str, Any] | None = None
) -> Iterator[tuple[str, str, str, str]]:
    """Yield (environment variable, value in effect, where it came from, meaning) for a group.

    Where it came from is `option` (an override), `env` or `default`; secrets are masked.
    """
    given = dict(overrides or {})
    settings = load(cls, given)
    for name, field in cls.model_fields.items():
        if name in given:
            source = "option"
        elif name in settings.model_fields_set:
            source = "env"
        else:
            source = "default"
        yield env_name(name), shown(getattr(settings, name)), source, field.description or ""


def shown(value: object) -> str:
    """A setting's value as `config` and the README show it: secrets masked, blanks `unset`."""
    if isinstance(value, SecretStr):
        return "**********" if value.get_secret_value() else "unset"
    if isinstance(value, bool):
        return str(value).lower()
    return "unset" if value is None or value == "" else str(value)


# Braze's REST endpoints, one per instance, as its documentation lists them; a workspace's is
# shown in its dashboard under Settings > APIs and Identifiers.
BRAZE_REST_ENDPOINTS: tuple[tuple[str, str], ...] = (
    ("US-01", "https://rest.iad-01.braze.com"),
    ("US-02", "https://rest.iad-02.braze.com"),
    ("US-03", "https://rest.iad-03.braze.com"),
    ("US-04", "https://rest.iad-04.braze.com"),
    ("US-05", "https://rest.iad-05.braze.com"),
    ("US-06", "https://rest.iad-06.braze.com"),
    ("US-07", "https://rest.iad-07.braze.com"),
    ("US-08", "https://rest.iad-08.braze.com"),
    ("US-10", "https://rest.us-10.braze.com"),
    ("EU-01", "https://rest.fra-01.braze.eu"),
    ("EU-02", "https://rest.fra-02.braze.eu"),
    ("AU-01", "https://rest.au-01.braze.com"),
    ("ID-01", "https://rest.id-01.braze.com"),
    ("JP-01", "https://rest.jp-01.braze.com"),
    ("KR-01", "https://rest.kr-01.braze.com"),
)


def require_braze(worker: WorkerSettings) -> WorkerSettings:
    """Return the settings if they name a Braze endpoint and key; ConfigError naming both if not.

    Neither has a default: a worker must deliver to the workspace someone chose.
    """
    missing = [
        env_name(name)
        for name, value in (
            ("braze_rest_endpoint", worker.braze_rest_endpoint),
            ("braze_api_key", worker.braze_api_key.get_secret_value()),
        )
        if not value.strip()
    ]
    if not missing:
        return worker
    endpoints = "\n".join(f"  {instance}  {url}" for instance, url in BRAZE_REST_ENDPOINTS)
    raise ConfigError(
        f"BRAZE_REST_ENDPOINT and BRAZE_API_KEY must both be set ({_and(missing)} "
        f"{'is' if len(missing) == 1 else 'are'} not). BRAZE_API_KEY is a REST API key of the "
        "workspace with the users.track permission; BRAZE_REST_ENDPOINT is the REST endpoint "
        "of the workspace's Braze instance (the dashboard shows it under Settings > APIs and "
        f"Identifiers):\n{endpoints}\n"
        "To try the connector without Braze, `make run` and deploy/compose.yaml point the "
        "worker at the Braze sandbox."
    )


ALL_GROUPS: tuple[type[_Settings], ...] = (
    KafkaSettings,
    TopicSettings,
    ReceiverSettings,
    LogSettings,
    WorkerSettings,
)
