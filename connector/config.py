"""Settings: read once from the environment (or command-line overrides) into frozen objects.

Each field's name is its environment variable in lower case, so `RAW_TOPIC` is `raw_topic` and
`--raw-topic` on the command line. Nothing else in the package reads `os.environ`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Literal, TypeVar

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from connector.errors import ConfigError

MIB = 1024 * 1024
DAY_MS = 24 * 3600 * 1000

DEFAULT_KEY_PATHS = "user_info.email,email,contact.email,lead.email,data.email,Email"
DEFAULT_LEAD_ID_PATHS = "id,_id,lead_id,leadId"


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
        return value


class LogSettings(_Settings):
    """Logging."""

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Lowest level logged."
    )
    log_format: Literal["json", "text"] = Field(
        "json", description="`json` lines for machines, `text` for people."
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
        problems.append(f"{name}: {error['msg']}")
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
)
