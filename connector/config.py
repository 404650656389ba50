"""Settings: read once from the environment (or command-line overrides) into frozen objects.

Each field's name is its environment variable in lower case, so `RAW_TOPIC` is `raw_topic` and
`--raw-topic` on the command line. Nothing else in the package reads `os.environ`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Literal, TypeVar

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, SettingsConfigDict

from connector.errors import ConfigError
from connector.mapping_paths import parse_lead_path

MIB = 1024 * 1024
DAY_MS = 24 * 3600 * 1000

DEFAULT_KEY_PATHS = "user_info.email,email,contact.email,lead.email,data.email,Email"
DEFAULT_LEAD_ID_PATHS = "id,_id,lead_id,leadId"

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
_SASL_FIELDS = ("kafka_sasl_mechanism", "kafka_sasl_username", "kafka_sasl_password")
_TLS_FIELDS = ("kafka_ssl_ca_file", "kafka_ssl_cert_file", "kafka_ssl_key_file")


class _Settings(BaseSettings):
    model_config = SettingsConfigDict(frozen=True, extra="ignore", case_sensitive=False)


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
    # Imported here: it loads aiokafka, which settings without TLS never need.
    from connector.kafka_security import tls_context

    try:
        tls_context(kafka)
    except ConfigError as exc:
        return [str(exc)]
    return []


def _and(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


class TopicSettings(_Settings):
    """Names and shape of the connector's topics."""

    raw_topic: str = Field("outgrow.events.raw", description="Topic of raw Outgrow submissions.")
    dlq_topic: str = Field("outgrow.events.dlq", description="Dead-letter topic.")
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
    record_key_paths: str = Field(
        DEFAULT_KEY_PATHS, description="JSON paths tried in order for the record key (identity)."
    )
    record_lead_id_paths: str = Field(
        DEFAULT_LEAD_ID_PATHS, description="JSON paths of the lead id, the key's fallback."
    )

    @field_validator("record_key_paths", "record_lead_id_paths")
    @classmethod
    def _paths_not_blank(cls, value: str) -> str:
        if not split_list(value):
            raise ValueError("give at least one path")
        for text in split_list(value):
            parse_lead_path(text)  # a PathSyntaxError is a ValueError saying what is wrong
        return value


class LogSettings(_Settings):
    """Logging."""

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Lowest level logged."
    )
    log_format: Literal["json", "text"] = Field(
        "json", description="`json` lines for machines, `text` for people."
    )


SANDBOX_DEV_API_KEY = "outgrow-braze-sandbox-dev-key"


class SandboxSettings(_Settings):
    """The local Braze sandbox (`outgrow-braze sandbox`), a stand-in for Braze's REST API."""

    sandbox_host: str = Field("127.0.0.1", description="Address the sandbox listens on.")
    sandbox_port: int = Field(
        9090, ge=0, le=65_535, description="Port the sandbox listens on; 0 picks a free one."
    )
    sandbox_api_key: SecretStr = Field(
        SecretStr(SANDBOX_DEV_API_KEY),
        description=f"REST API key with every permission; defaults to the public development "
        f"key `{SANDBOX_DEV_API_KEY}`.",
    )
    sandbox_extra_keys: SecretStr | None = Field(
        None,
        description="More keys, `key:permission+permission`, comma-separated "
        "(e.g. `ro:users.export.ids`; `key:` has none).",
    )
    sandbox_track_rate_limit: int = Field(
        3_000, ge=1, description="`/users/track` requests allowed per window, per workspace."
    )
    sandbox_track_rate_window_s: float = Field(
        3.0, gt=0, description="Length of the `/users/track` rate-limit window."
    )
    sandbox_export_rate_limit: int = Field(
        250, ge=1, description="`/users/export/ids` requests allowed per window."
    )
    sandbox_export_rate_window_s: float = Field(
        60.0, gt=0, description="Length of the `/users/export/ids` rate-limit window."
    )
    sandbox_max_objects: int = Field(
        75, ge=1, description="Objects allowed in one `/users/track` request, all arrays together."
    )
    sandbox_legacy_object_limit: bool = Field(
        False, description="Apply SANDBOX_MAX_OBJECTS to each array instead (legacy rate limits)."
    )
    sandbox_max_body_bytes: int = Field(
        4 * MIB, ge=1_024, le=64 * MIB, description="Largest body accepted; larger ones get 413."
    )
    sandbox_faults: str | None = Field(
        None, description="Faults at start-up: a JSON object as taken by `POST /_sandbox/faults`."
    )
    sandbox_recent_events: int = Field(
        20, ge=0, le=1_000, description="Events kept per profile for the page at `GET /`."
    )


class WorkerSettings(_Settings):
    """The delivery worker: Braze, its budget, batching and the consumer group."""

    braze_rest_endpoint: str = Field(
        "http://127.0.0.1:9090",
        description="Braze REST endpoint, e.g. `https://rest.iad-01.braze.com`, or the sandbox.",
    )
    braze_api_key: SecretStr = Field(
        SecretStr(SANDBOX_DEV_API_KEY),
        description="Braze REST API key with `users.track`; defaults to the sandbox's dev key.",
    )
    mapping_file: str | None = Field(
        None, description="Mapping file (YAML); unset uses the mapping shipped with the package."
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
    worker_port: int = Field(8081, ge=0, le=65_535, description="Port of health and metrics.")
    worker_host: str = Field("0.0.0.0", description="Address of health and metrics.")
    consumer_group: str = Field("outgrow-braze-worker", description="Kafka consumer group.")
    worker_batch_window_ms: int = Field(
        20, ge=0, le=5_000, description="How long records wait to be coalesced into a request."
    )
    # Requests per second are at most this over Braze's latency. A request takes its slot of the
    # budget before it is packed: only requests being sent or retried count.
    worker_max_requests_in_flight: int = Field(
        128, ge=1, le=1_000, description="Braze requests sent concurrently by one worker."
    )
    worker_max_pending_records: int = Field(
        20_000, ge=100, description="Records held in memory before fetching pauses."
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


def split_list(value: str) -> list[str]:
    """Split a comma-separated setting into its non-empty, trimmed items."""
    return [item.strip() for item in value.split(",") if item.strip()]


def env_name(field: str) -> str:
    """Name of the environment variable behind a settings field."""
    return field.upper()


def describe_fields(cls: type[_Settings]) -> Iterator[tuple[str, str, str]]:
    """Yield (environment variable, default, meaning) for each field of a settings group."""
    for name, field in cls.model_fields.items():
        default = "unset" if field.default is None else str(field.default)
        if isinstance(field.default, bool):
            default = str(field.default).lower()
        yield env_name(name), default, field.description or ""


ALL_GROUPS: tuple[type[_Settings], ...] = (
    KafkaSettings,
    TopicSettings,
    ReceiverSettings,
    LogSettings,
    SandboxSettings,
    WorkerSettings,
)
