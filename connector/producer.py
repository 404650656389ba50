"""The Kafka producer's lifecycle: idempotent, acks=all, reconnecting on its own."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, MessageSizeTooLargeError
from aiokafka.partitioner import murmur2

from connector.config import KafkaSettings
from connector.errors import ConnectorError, KafkaUnavailable, RecordTooLarge
from connector.kafka_security import KafkaRefused, client_kwargs, connect_failure

log = logging.getLogger(__name__)

Headers = Sequence[tuple[str, bytes | None]]  # Kafka allows a header without a value

_CONNECT_BACKOFF_S = (0.5, 1.0, 2.0, 5.0)
_READY_CACHE_S = 1.0


@dataclass(frozen=True)
class Delivery:
    """Where Kafka stored a record."""

    partition: int
    offset: int


@functools.lru_cache(maxsize=65_536)
def _key_hash(key: bytes) -> int:
    # aiokafka's murmur2 is pure Python; one user's key is hashed again for each submission.
    return int(murmur2(key)) & 0x7FFFFFFF


def partition_of(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner gives a key (murmur2), of `partitions`."""
    return _key_hash(key) % partitions


def _partition_for(key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
    """Kafka's default partitioning (murmur2 of the key), with the hash cached per key."""
    if key is None:
        return int(random.choice(available or all_partitions))
    return all_partitions[partition_of(key, len(all_partitions))]


class _Deadline:
    """Cancels a publishing task that Kafka did not answer in time.

    A `loop.call_later` handle per post costs a fraction of what `asyncio.timeout` costs, and the
    receiver pays it on every webhook.
    """

    __slots__ = ("_task", "expired")

    def __init__(self, task: asyncio.Task[object]) -> None:
        self._task = task
        self.expired = False

    def __call__(self) -> None:
        self.expired = True
        self._task.cancel()


class Publisher:
    """Publish records to one topic and report readiness; `async with` starts and flushes it."""

    def __init__(self, kafka: KafkaSettings, topic: str, max_request_bytes: int) -> None:
        self._kafka = kafka
        self._topic = topic
        self._max_request_bytes = max_request_bytes
        self._producer: AIOKafkaProducer | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._ready_at = 0.0
        self._ready_reason: str | None = "not connected to Kafka yet"
        self._failure: ConnectorError | None = None  # why the last connection attempt failed
        self._refused = asyncio.Event()  # set once a broker refused the credentials or TLS

    async def __aenter__(self) -> Publisher:
        self._connecting = asyncio.create_task(self._connect(), name="kafka-connect")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._connecting is not None:
            self._connecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connecting
        if self._producer is not None:
            # stop() sends what is buffered and waits for the broker's answers.
            await self._producer.stop()

    async def wait_connected(self, timeout_s: float) -> None:
        """Wait until the first connection to Kafka succeeded; KafkaRefused as soon as refused."""
        if self._connecting is None:
            return
        refused = asyncio.create_task(self._refused.wait())
        try:
            await asyncio.wait(
                {self._connecting, refused}, timeout=timeout_s, return_when="FIRST_COMPLETED"
            )
        finally:
            refused.cancel()
        if self._connecting.done():
            return self._connecting.result()
        if isinstance(self._failure, KafkaRefused):
            raise self._failure
        detail = f": {self._failure}" if self._failure else ""
        raise KafkaUnavailable(f"not connected to Kafka within {timeout_s:g} s{detail}")

    async def _connect(self) -> None:
        attempt = 0
        while True:
            producer = self._new_producer()
            try:
                await producer.start()
            except KafkaError as exc:
                with contextlib.suppress(Exception):
                    await producer.stop()
                await self._failed(attempt, exc)
                delay = _CONNECT_BACKOFF_S[min(attempt, len(_CONNECT_BACKOFF_S) - 1)]
                attempt += 1
                await asyncio.sleep(delay)
                continue
            self._producer, self._failure = producer, None
            log.info("connected to kafka", extra={"bootstrap": self._kafka.kafka_bootstrap_servers})
            return

    async def _failed(self, attempt: int, exc: KafkaError) -> None:
        """Record why a connection attempt failed; log it first, and when refusals start or end."""
        failure = await connect_failure(self._kafka, exc)
        refused = isinstance(failure, KafkaRefused)
        if attempt == 0 or refused != self._refused.is_set():
            level = logging.ERROR if refused else logging.WARNING
            what = "kafka refuses the connection" if refused else "kafka not reachable yet"
            log.log(
                level,
                f"{what}, retrying",
                extra={"bootstrap": self._kafka.kafka_bootstrap_servers, "error": str(failure)},
            )
        self._failure = failure
        if refused:
            self._refused.set()
        else:
            self._refused.clear()

    def _new_producer(self) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            acks="all",
            enable_idempotence=True,
            linger_ms=self._kafka.kafka_linger_ms,
            max_request_size=self._max_request_bytes,
            max_batch_size=256 * 1024,
            partitioner=_partition_for,
            **client_kwargs(self._kafka),
        )

    async def publish(
        self, key: bytes | None, value: bytes, headers: Headers, timeout_s: float
    ) -> Delivery:
        """Send one record and wait for the broker's acknowledgement, at most `timeout_s`."""
        producer = self._producer
        if producer is None:
            raise KafkaUnavailable("not connected to Kafka yet")
        task = asyncio.current_task()
        assert task is not None, "publish() runs inside a task"
        deadline = _Deadline(task)
        timer = asyncio.get_running_loop().call_later(timeout_s, deadline)
        try:
            pending = await producer.send(self._topic, value=value, key=key, headers=list(headers))
            metadata = await pending
        except asyncio.CancelledError:
            if not deadline.expired:
                raise
            task.uncancel()
            raise KafkaUnavailable(f"Kafka did not acknowledge within {timeout_s:g} s") from None
        except MessageSizeTooLargeError as exc:
            raise RecordTooLarge(f"Kafka refused the record as too large: {exc}") from None
        except KafkaError as exc:
            raise KafkaUnavailable(f"Kafka did not take the record: {exc}") from None
        finally:
            timer.cancel()
        return Delivery(partition=metadata.partition, offset=metadata.offset)

    async def not_ready_reason(self) -> str | None:
        """Say why the producer cannot publish now, or None when it can; cached briefly."""
        now = time.monotonic()
        if now - self._ready_at < _READY_CACHE_S:
            return self._ready_reason
        self._ready_reason = await self._probe()
        self._ready_at = time.monotonic()
        return self._ready_reason

    async def _probe(self) -> str | None:
        if self._producer is None:
            if self._refused.is_set():
                # Said on the public port: the details (broker, user) are in the logs only.
                return "Kafka refuses the connection's credentials or TLS settings"
            return "not connected to Kafka yet"
        try:
            async with asyncio.timeout(2.0):
                cluster = await self._producer.client.fetch_all_metadata()
        except (TimeoutError, KafkaError):
            return "Kafka does not answer metadata requests"
        if self._topic not in cluster.topics():
            return f"topic {self._topic} does not exist"
        return None
