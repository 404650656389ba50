"""Prometheus metrics, each service with a registry of its own."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "ReceiverMetrics", "WorkerMetrics"]

_LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_BODY_BUCKETS = (256, 1024, 4096, 16_384, 65_536, 262_144, 1_048_576, 4_194_304)
_OBJECT_BUCKETS = (1, 5, 10, 25, 50, 70, 74, 75, 150, 225)
_E2E_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600)
_RESTORE_BUCKETS_S = (0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300)
# The dlq-stage values. Their series exist from start-up: increase() and rate() see a counter's
# first increment only if they saw it at 0 before.
DEAD_LETTER_STAGES = ("parse", "map", "braze")


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
        # The common answer, resolved once: labels() on every request costs a lock and a lookup.
        self.accepted = self.requests.labels("202", "")
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
        self.in_flight_bytes = Gauge(
            "outgrow_receiver_in_flight_bytes",
            "Bytes of the bodies of the posts being handled now (declared, or read so far).",
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


@dataclass
class WorkerMetrics:
    """What the worker reports, from records consumed to Braze's answers."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.consumed = Counter("outgrow_worker_records_consumed", "Records read.", registry=r)
        self.mapped = Counter("outgrow_worker_records_mapped", "Records mapped.", registry=r)
        self.filtered = Counter(
            "outgrow_worker_records_filtered", "Records dropped by a filter.", ["rule"], registry=r
        )
        self.delivered = Counter(
            "outgrow_worker_records_delivered", "Records Braze accepted.", registry=r
        )
        self.dead_lettered = Counter(
            "outgrow_worker_records_dead_lettered",
            "Records sent to the dead-letter topic, by stage.",
            ["stage"],
            registry=r,
        )
        for stage in DEAD_LETTER_STAGES:
            self.dead_lettered.labels(stage)
        self.requests = Counter(
            "outgrow_worker_braze_requests", "Braze requests by status.", ["status"], registry=r
        )
        self.objects = Histogram(
            "outgrow_worker_objects_per_request",
            "Objects per Braze request.",
            buckets=_OBJECT_BUCKETS,
            registry=r,
        )
        self.retries = Counter(
            "outgrow_worker_braze_retries", "Braze requests retried.", registry=r
        )
        self.throttled = Counter(
            "outgrow_worker_braze_throttled", "429 answers from Braze.", registry=r
        )
        self.limiter_wait = Histogram(
            "outgrow_worker_limiter_wait_seconds",
            "Time spent waiting for the rate limiter.",
            buckets=_LATENCY_BUCKETS_S,
            registry=r,
        )
        self.braze_seconds = Histogram(
            "outgrow_worker_braze_request_seconds",
            "Duration of Braze requests.",
            buckets=_LATENCY_BUCKETS_S,
            registry=r,
        )
        self.rate = Gauge(
            "outgrow_worker_rate_limit_per_second", "Braze requests/s allowed now.", registry=r
        )
        self.budget = Gauge(
            "outgrow_worker_rate_budget_per_second",
            "Braze requests/s this worker may use: BRAZE_RATE_LIMIT x BRAZE_RATE_SHARE x its"
            " share of the partitions.",
            registry=r,
        )
        self.halted = Gauge(
            "outgrow_worker_halted", "1 while Braze refuses the configuration.", registry=r
        )
        self.braze_outage = Gauge(
            "outgrow_worker_braze_outage",
            "1 while Braze has given no answer (no connection, timeouts, 5xx) for longer than"
            " WORKER_OUTAGE_WARN_S.",
            registry=r,
        )
        self.ready = Gauge(
            "outgrow_worker_ready",
            "1 while /readyz answers 200: Braze answers, accepts the configuration, and the"
            " worker is not stopping.",
            registry=r,
        )
        self.lag = Gauge(
            "outgrow_worker_consumer_lag",
            "Records behind the end of each partition.",
            ["partition"],
            registry=r,
        )
        self.end_to_end = Histogram(
            "outgrow_worker_end_to_end_seconds",
            "From the receiver's received-at to Braze's acceptance.",
            buckets=_E2E_BUCKETS_S,
            registry=r,
        )
        self._delivery_state(r)

    def _delivery_state(self, r: CollectorRegistry) -> None:
        """What the delivery state decided (issue 15), and its upkeep."""
        self.events_sent = Counter(
            "outgrow_worker_events_sent", "Events Braze accepted.", registry=r
        )
        self.events_skipped = Counter(
            "outgrow_worker_events_skipped",
            "Events left out because Braze accepted their de-duplication key already.",
            registry=r,
        )
        self.attributes_sent = Counter(
            "outgrow_worker_attributes_sent", "Attributes Braze accepted.", registry=r
        )
        self.attributes_skipped = Counter(
            "outgrow_worker_attributes_skipped",
            "Attributes left out: unchanged since Braze confirmed them, or older (history) than"
            " the value Braze confirmed.",
            ["why"],
            registry=r,
        )
        # Why an attribute was left out: its value is the one Braze confirmed last, or Braze
        # confirmed a later record's already (history never moves a profile backwards). Both
        # series exist from start-up, resolved once: labels() for every user screened costs.
        self.attributes_unchanged = self.attributes_skipped.labels("unchanged")
        self.attributes_history = self.attributes_skipped.labels("history")
        self.unguarded = Counter(
            "outgrow_worker_records_unguarded",
            "Records sent in full because their user's key belongs to another partition than"
            " the one they were read from (an old record, a changed mapping).",
            registry=r,
        )
        self.state_restore_seconds = Histogram(
            "outgrow_worker_state_restore_seconds",
            "Time to restore the delivery state of the partitions assigned at once.",
            buckets=_RESTORE_BUCKETS_S,
            registry=r,
        )
        self.state_users = Gauge(
            "outgrow_worker_state_users",
            "Users in the delivery state of each owned partition.",
            ["partition"],
            registry=r,
        )
        self.state_writes = Counter(
            "outgrow_worker_state_writes",
            "Delivery-state records written to the state topic.",
            registry=r,
        )

    def forget_partitions(self, partitions: Iterable[int]) -> None:
        """Drop the series of partitions this worker no longer owns, so none stays frozen."""
        for partition in partitions:
            for gauge in (self.lag, self.state_users):
                with contextlib.suppress(KeyError):  # older prometheus_client: no such series
                    gauge.remove(str(partition))

    def render(self) -> bytes:
        """Return the text exposition of every metric."""
        return generate_latest(self.registry)
