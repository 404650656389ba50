"""The delivery state in a pipeline: restored per partition, screening, confirming.

A partition's state is restored from the state topic when it is assigned, and its records are
queued only once that is done (`ready()`), so that nothing of it is sent before. Screening
(`screen()`, the queue's hook) decides what of a user's records is sent when the user is taken
for a request; confirming (`confirm()`, delivery's) records what Braze accepted and returns once
Kafka has the state records. A revoked partition's state is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
from collections.abc import Awaitable, Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from aiokafka.errors import KafkaError

from connector.batching import Item
from connector.deadletter import ORIGIN_HEADERS
from connector.delivery import finish, source
from connector.delivery_state import DeliveryState, Records
from connector.errors import KafkaUnavailable
from connector.metrics import WorkerMetrics
from connector.outcomes import Outcomes
from connector.state_store import StateStore
from connector.state_topic import Restored

log = logging.getLogger(__name__)

RESTORE_RETRY_S = (1.0, 30.0)  # the first and the longest pause between restore attempts
COUNT_USERS_EVERY_S = 60.0  # counting scans each partition's table


Restore = Callable[[Iterable[int], StateStore], Awaitable[dict[int, Restored]]]


class Writer(Protocol):
    """Where state records go (`connector.state_topic.StateWriter`)."""

    async def write(self, records: Records) -> None:
        """Return once Kafka acknowledged every record."""


@dataclass(frozen=True)
class StateParts:
    """What a pipeline's delivery state is made of; `restore` fills the store's partitions from
    the state topic, and `writer` produces to it."""

    decisions: DeliveryState
    store: StateStore
    writer: Writer
    restore: Restore


class Coalesced:
    """Writes state records in as few produce calls as the answers allow: those confirmed while
    a write is on its way go together in the next one."""

    def __init__(self, writer: Writer, metrics: WorkerMetrics) -> None:
        self.writer = writer
        self.metrics = metrics
        self.pending: Records = {}
        self.waiting: list[asyncio.Future[None]] = []
        self.task: asyncio.Task[None] | None = None

    async def write(self, records: Records) -> None:
        """Return once Kafka has these records (and those written with them)."""
        for partition, rows in records.items():
            self.pending.setdefault(partition, []).extend(rows)
        done = asyncio.get_running_loop().create_future()
        self.waiting.append(done)
        if self.task is None:
            self.task = asyncio.create_task(self._flush(), name="state-writes")
        await done

    async def _flush(self) -> None:
        try:
            while self.pending:
                records, waiting = self.pending, self.waiting
                self.pending, self.waiting = {}, []
                try:
                    await self.writer.write(records)
                except Exception as exc:  # the writer retries what can be: each waiter raises it
                    _settle(waiting, exc)
                    continue
                self.metrics.state_writes.inc(sum(map(len, records.values())))
                _settle(waiting, None)
        finally:
            self.task = None

    async def close(self) -> None:
        """Stop writing; whoever still waits for a write is cancelled."""
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        for done in self.waiting:
            done.cancel()


def _settle(waiting: list[asyncio.Future[None]], error: Exception | None) -> None:
    for done in waiting:
        if done.done():
            continue
        if error is None:
            done.set_result(None)
        else:
            done.set_exception(error)


@dataclass(frozen=True)
class Origin:
    """Where the records a pipeline reads were first read, when it reads copies: a redrive reads
    dead letters, and their users' delivery state is kept by the raw topic's partition and
    offset they came from (their `dlq-original-*` headers)."""

    topic: str  # the raw topic
    partitions: int  # its partition count

    def place(self, item: Item) -> tuple[int, int] | None:
        """The raw partition and offset a dead letter came from; None when its headers do not
        say it came from the raw topic (its user's state is then neither read nor written)."""
        topic, partition, offset = (source(item).header(name) for name in ORIGIN_HEADERS)
        at, number = _number(partition), _number(offset)
        if topic != self.topic or at is None or number is None:
            return None
        return at, number


def _number(text: str | None) -> int | None:
    """A header's partition or offset: ASCII digits, few enough for int(); else None."""
    if text and text.isascii() and text.isdigit() and len(text) < 20:
        return int(text)
    return None


def _placed(items: list[Item], origin: Origin) -> tuple[list[Item], dict[Any, Item], list[Item]]:
    """The items as read where their records came from, each copy by that place, and the
    items that cannot be placed."""
    placed, copies, unplaced = [], {}, []
    for item in items:
        place = origin.place(item)
        if place is None or place in copies:  # a second dead letter of one record: rare
            unplaced.append(item)
            continue
        moved = item._replace(partition=place[0], offset=place[1])
        placed.append(moved)
        copies[place] = item
    placed.sort(key=_read_order)
    return placed, copies, unplaced


def _read_order(item: Item) -> tuple[int, int]:
    return item.partition, item.offset


class PipelineState:
    """The delivery state of the partitions a pipeline holds.

    With an `origin` (a redrive), records are screened and confirmed where they were first
    read, and the state of every raw partition is restored before the first is sent.
    """

    def __init__(
        self,
        parts: StateParts,
        outcomes: Outcomes,
        metrics: WorkerMetrics,
        count_partitions: Callable[[], int],
        origin: Origin | None = None,
    ) -> None:
        self.decisions = parts.decisions
        self.store = parts.store
        self.restore = parts.restore
        self.outcomes = outcomes
        self.metrics = metrics
        self.origin = origin
        if origin is not None:
            count_partitions = functools.partial(int, origin.partitions)
        self.count_partitions = count_partitions
        self.partitions = 1  # of the raw topic, for the guard; counted again on assignment
        self.writes = Coalesced(parts.writer, metrics)
        self.restored: set[int] = set()
        self.restoring: dict[int, asyncio.Task[None]] = {}
        self.counted_at = time.monotonic()

    # -- partitions ---------------------------------------------------------------------------

    def assigned(self, partitions: Iterable[int]) -> None:
        """Start restoring the state of partitions newly assigned."""
        self.partitions = max(self.count_partitions(), 1)
        new = [p for p in partitions if p not in self.restored and p not in self.restoring]
        if new:
            self._start(sorted(new))

    async def ready(self, partition: int) -> bool:
        """Wait until the partition's state is restored (starting that if nothing did); False
        when it was revoked meanwhile, so its records are not this pipeline's. Copies of
        records (an `origin`) may come from any raw partition: all of them are restored."""
        if self.origin is None:
            return await self._restored(partition)
        self.assigned(range(self.count_partitions()))  # in one restore, what is not under way
        for each in range(self.partitions):
            if not await self._restored(each):
                return False
        return True

    async def _restored(self, partition: int) -> bool:
        if partition in self.restored:
            return True
        task = self.restoring.get(partition)
        if task is None:
            self.partitions = max(self.count_partitions(), 1)
            task = self._start([partition])
        while True:
            await asyncio.wait((task,))
            if partition in self.restored:
                return True
            if not task.cancelled() and (error := task.exception()) is not None:
                raise error  # Kafka refuses to let it be read: nothing can be sent
            task = self.restoring.get(partition)  # restarted without the partitions revoked
            if task is None:
                return False

    def revoked(self, partitions: Collection[int]) -> None:
        """Forget the partitions' state; restores under way for them stop (those for other
        partitions too start again without them)."""
        cancelled = {self.restoring[p] for p in partitions if p in self.restoring}
        survivors = [p for p, task in self.restoring.items() if task in cancelled]
        for task in cancelled:
            task.cancel()
        for partition in survivors:
            del self.restoring[partition]
        for partition in partitions:
            self.restored.discard(partition)
            self.store.drop(partition)
        if again := [p for p in survivors if p not in partitions]:
            self._start(again)

    def _start(self, partitions: list[int]) -> asyncio.Task[None]:
        task = asyncio.create_task(self._restore(partitions), name="state-restore")
        for partition in partitions:
            self.restoring[partition] = task
        return task

    async def _restore(self, partitions: list[int]) -> None:
        """Restore the partitions' state, trying again while Kafka is unavailable."""
        pause_s, longest_s = RESTORE_RETRY_S
        started = time.monotonic()
        while True:
            try:
                restored = await self.restore(partitions, self.store)
                break
            except (KafkaError, KafkaUnavailable) as exc:
                log.warning(
                    "cannot restore the delivery state; trying again",
                    extra={"partitions": partitions, "error": str(exc) or type(exc).__name__},
                )
                await asyncio.sleep(pause_s * random.uniform(0.8, 1.2))
                pause_s = min(pause_s * 2, longest_s)
        seconds = time.monotonic() - started
        self.metrics.state_restore_seconds.observe(seconds)
        for partition in partitions:
            self.restoring.pop(partition, None)
            self.restored.add(partition)
            found = restored.get(partition)
            users = found.users if found is not None else 0
            self.metrics.state_users.labels(str(partition)).set(users)
        users = sum(found.users for found in restored.values())
        log.info(
            "delivery state restored",
            extra={"partitions": partitions, "users": users, "seconds": round(seconds, 3)},
        )

    def count_users(self) -> None:
        """Publish how many users each restored partition's state holds, once a minute."""
        if time.monotonic() - self.counted_at < COUNT_USERS_EVERY_S:
            return
        self.counted_at = time.monotonic()
        for partition in self.restored:
            self.metrics.state_users.labels(str(partition)).set(self.store.count(partition))

    # -- records ------------------------------------------------------------------------------

    def screen(self, user_key: str, items: list[Item]) -> list[Item]:
        """What to send of a user's waiting records (the queue's hook); finish the others."""
        if self.origin is not None:
            return self._screen_copies(user_key, items, self.origin)
        screened = self.decisions.screen(user_key, items, self.partitions)
        self.outcomes.screened(screened)
        if screened.skipped:
            finish(screened.skipped)
        return screened.kept

    def _screen_copies(self, user_key: str, items: list[Item], origin: Origin) -> list[Item]:
        """Screen copies (dead letters) as the records they came from; those that do not say
        where they came from are sent in full."""
        placed, copies, unplaced = _placed(items, origin)
        screened = self.decisions.screen(user_key, placed, self.partitions)
        screened.unguarded += len(unplaced)
        self.outcomes.screened(screened)
        if screened.skipped:
            finish([copies[item[:2]] for item in screened.skipped])
        kept = [copies[item[:2]]._replace(update=item.update) for item in screened.kept]
        return sorted(kept + unplaced, key=_read_order)

    async def confirm(self, items: list[Item]) -> None:
        """Record what Braze accepted of partitions still held; return once Kafka has it."""
        if self.origin is not None:
            items = _placed(items, self.origin)[0]
        if not items:
            return
        records = self.decisions.confirm(items, self.partitions)
        if records:
            await self.writes.write(records)

    async def close(self) -> None:
        """Stop restoring and writing."""
        for task in set(self.restoring.values()):
            task.cancel()
        await asyncio.gather(*self.restoring.values(), return_exceptions=True)
        self.restoring.clear()
        await self.writes.close()
