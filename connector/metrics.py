"""Prometheus metrics, each service with a registry of its own."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "ReceiverMetrics"]

_LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_BODY_BUCKETS = (256, 1024, 4096, 16_384, 65_536, 262_144, 1_048_576, 4_194_304)


@dataclass
class ReceiverMetrics:
    """What the receiver reports: requests by status, publish latency, bytes, in-flight."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.requests = Counter(
            "outgrow_receiver_requests",
            "Webhook posts answered, by HTTP status and error code.",
            ["status", "error"],
            registry=self.registry,
        )
        self.publish_seconds = Histogram(
            "outgrow_receiver_publish_seconds",
            "Time from handing a record to the producer until Kafka acknowledged it.",
            buckets=_LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.body_bytes = Histogram(
            "outgrow_receiver_body_bytes",
            "Size of accepted webhook bodies.",
            buckets=_BODY_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "outgrow_receiver_in_flight",
            "Webhook posts being handled now.",
            registry=self.registry,
        )
        self.ready = Gauge(
            "outgrow_receiver_ready",
            "1 while the receiver can publish to Kafka and is not draining.",
            registry=self.registry,
        )

    def render(self) -> bytes:
        """Return the text exposition of every metric."""
        return generate_latest(self.registry)
