"""The state topic: restoring a partition's delivery state from it, and writing to it.

Raw partition p's users have their state in partition p of the compacted state topic, keyed by
state key, so a partition's state moves with the partition: its new owner reads state partition
p from its beginning up to the end it had when the restore began, into the local store.
Writes name the partition explicitly and wait for every in-sync replica (acks=all, idempotent).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from types import TracebackType

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from connector.cluster import Cluster, TopicMissing
from connector.config import KafkaSettings
from connector.errors import ConfigError, KafkaUnavailable
from connector.kafka_security import client_kwargs, start_consumer, unreachable
from connector.state_store import StateStore

log = logging.getLogger(__name__)

KEY_BYTES = 16  # a state key; records keyed otherwise are not the connector's and are ignored
_FETCH_BYTES = 4 * 1024 * 1024  # per partition: a restore reads whole partitions
_FETCH_RECORDS = 10_000  # at most in memory as Python objects at once
_BACKOFF_S = (0.5, 1.0, 2.0, 5.0)
_MAX_BATCH_BYTES = 256 * 1024  # far above the largest state value (about 53 KB)

Records = dict[int, list[tuple[bytes, bytes]]]  # per partition: (state key, value)


@dataclass(frozen=True)
class Restored:
    """What restoring one partition read and kept."""

    records: int  # state records read (values and tombstones)
    users: int  # users with state afterwards
    seconds: float


async def restore(
    kafka: KafkaSettings, topic: str, partitions: Iterable[int], store: StateStore
) -> dict[int, Restored]:
    """Load each partition's state from the state topic into the store, replacing what it held.

    Reads up to the end offsets found when it starts, with its own consumer (no group).
    KafkaUnavailable if Kafka cannot be reached or the reading makes no progress for the
    request timeout; the partitions are then held empty, and restoring again starts afresh.
    """
    started = time.monotonic()
    wanted = sorted(set(partitions))
    for partition in wanted:
        store.load(partition)
    if not wanted:
        return {}
    await _check_topic(kafka, topic, wanted)
    consumer = AIOKafkaConsumer(
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=_FETCH_BYTES,
        fetch_max_bytes=_FETCH_BYTES * 4,  # per fetch: memory stays bounded
        **client_kwargs(kafka, "state"),
    )
    await start_consumer(consumer, kafka)
    try:
        reading = _Reading(consumer, topic, kafka.kafka_request_timeout_ms / 1000, started)
        return await reading.run(wanted, store)
    except KafkaError as exc:
        raise unreachable(kafka, exc) from None
    finally:
        await consumer.stop()


async def _check_topic(kafka: KafkaSettings, topic: str, wanted: list[int]) -> None:
    """ConfigError when the state topic is missing or lacks a partition wanted: restoring
    would otherwise wait for it without end, and nothing of those partitions could be sent."""
    try:
        async with Cluster(kafka) as cluster:
            held = {tp.partition for tp in await cluster.partitions(topic)}
    except TopicMissing:
        raise ConfigError(
            f"the delivery-state topic {topic} (STATE_TOPIC) does not exist; create it with"
            " `outgrow-braze topics ensure`"
        ) from None
    if missing := [p for p in wanted if p not in held]:
        raise ConfigError(
            f"the delivery-state topic {topic} has {len(held)} partitions, fewer than the raw"
            f" topic (no partition {missing[0]}); give it as many (`outgrow-braze topics ensure`"
            " says how)"
        )


class _Reading:
    """One restore's reading: partitions from their beginnings to the ends found at the start."""

    def __init__(
        self, consumer: AIOKafkaConsumer, topic: str, stall_s: float, started: float
    ) -> None:
        self.consumer, self.topic, self.stall_s, self.started = consumer, topic, stall_s, started

    async def run(self, partitions: list[int], store: StateStore) -> dict[int, Restored]:
        """Read every partition to its end into the store."""
        tps = [TopicPartition(self.topic, partition) for partition in partitions]
        self.consumer.assign(tps)
        await self.consumer.seek_to_beginning(*tps)
        ends = await self.consumer.end_offsets(tps)
        read = dict.fromkeys(partitions, 0)
        done: dict[int, Restored] = {}
        left = dict(ends)
        progress = time.monotonic()
        while True:
            for tp in [tp for tp, end in left.items() if await self.consumer.position(tp) >= end]:
                del left[tp]
                users = store.count(tp.partition)
                seconds = time.monotonic() - self.started
                done[tp.partition] = Restored(read[tp.partition], users, seconds)
            if not left:
                return done
            batch = await self.consumer.getmany(*left, timeout_ms=500, max_records=_FETCH_RECORDS)
            for tp, records in batch.items():
                end = left[tp]
                rows = [
                    (r.key, r.value)
                    for r in records
                    if r.offset < end and r.key is not None and len(r.key) == KEY_BYTES
                ]
                store.apply(tp.partition, rows)
                read[tp.partition] += len(rows)
            if batch:
                progress = time.monotonic()
            elif time.monotonic() - progress > self.stall_s:
                raise KafkaUnavailable(
                    f"restoring from {self.topic} made no progress in {self.stall_s:g} s"
                )


class StateWriter:
    """Writes state records into the named partitions of the state topic; `async with` it.

    `write` returns once Kafka acknowledged every record, retrying while Kafka is unavailable.
    A retry sends each user's value as the store holds it then (when a store is given), so a
    late retry never puts an older value after a newer one.
    """

    def __init__(
        self,
        kafka: KafkaSettings,
        topic: str,
        *,
        store: StateStore | None = None,
        linger_ms: int | None = None,
    ) -> None:
        self._kafka = kafka
        self.topic = topic
        self._store = store
        self._linger_ms = kafka.kafka_linger_ms if linger_ms is None else linger_ms
        self._producer: AIOKafkaProducer | None = None
        self._starting = asyncio.Lock()
        self._unavailable_since: float | None = None

    async def __aenter__(self) -> StateWriter:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()  # sends what is buffered and waits for the answers

    async def write(self, records: Records) -> None:
        """Write the records and wait until Kafka acknowledged all of them."""
        attempt = 0
        while True:
            try:
                await self._send(records if attempt == 0 else self._latest(records))
            except (KafkaError, KafkaUnavailable) as exc:
                self._failed(exc)
                await asyncio.sleep(_BACKOFF_S[min(attempt, len(_BACKOFF_S) - 1)])
                attempt += 1
                continue
            if self._unavailable_since is not None:
                took = time.monotonic() - self._unavailable_since
                log.info("state topic available again", extra={"topic": self.topic, "s": took})
                self._unavailable_since = None
            return

    async def _send(self, records: Records) -> None:
        producer = await self._started()
        sent: list[asyncio.Future[object]] = []
        for partition, rows in records.items():
            position = 0
            while position < len(rows):
                batch = producer.create_batch()
                added = 0
                for key, value in rows[position:]:
                    if batch.append(key=key, value=value, timestamp=None) is None:
                        break
                    added += 1
                if added == 0:  # cannot happen below _MAX_BATCH_BYTES; never spin on it
                    raise KafkaUnavailable(f"a state record of {len(rows[position][1])} bytes")
                batch.close()
                sent.append(await producer.send_batch(batch, self.topic, partition=partition))
                position += added
        await asyncio.gather(*sent)

    async def _started(self) -> AIOKafkaProducer:
        async with self._starting:
            if self._producer is None:
                producer = AIOKafkaProducer(
                    acks="all",
                    enable_idempotence=True,
                    linger_ms=self._linger_ms,
                    max_batch_size=_MAX_BATCH_BYTES,
                    **client_kwargs(self._kafka, "state"),
                )
                try:
                    await producer.start()
                except BaseException:
                    await producer.stop()
                    raise
                self._producer = producer
            return self._producer

    def _latest(self, records: Records) -> Records:
        """The records with each user's value as the store holds it now."""
        store = self._store
        if store is None:
            return records
        latest: Records = {}
        for partition, rows in records.items():
            if not store.holds(partition):  # revoked: what was confirmed still belongs there
                latest[partition] = rows
                continue
            latest[partition] = [(key, store.get(partition, key) or value) for key, value in rows]
        return latest

    def _failed(self, exc: Exception) -> None:
        if self._unavailable_since is None:
            self._unavailable_since = time.monotonic()
            log.warning(
                "state topic unavailable, retrying",
                extra={"topic": self.topic, "error": str(exc) or type(exc).__name__},
            )
