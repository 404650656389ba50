"""`offsets reset --to-time`: move the worker group's committed offsets to a moment in time.

Each partition goes to its first record at or after that time, or to its end when it has none.
Kafka takes offsets from outside a group only while the group has no members, so the reset is
refused while workers run; `--force` waits for the members to leave instead (a crashed worker
stays listed until its session times out).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO

from connector.cluster import Cluster, GroupBusy, GroupState
from connector.config import KafkaSettings
from connector.tables import print_table

_WAIT_PAUSE_S = 0.5


@dataclass(frozen=True)
class Move:
    """One partition's part of the plan."""

    partition: int
    committed: int | None  # None: the group never committed here and starts at `beginning`
    beginning: int
    end: int
    target: int

    @property
    def change(self) -> int:
        """Records re-read (negative) or skipped (positive) compared with today."""
        current = self.beginning if self.committed is None else self.committed
        return self.target - current


@dataclass(frozen=True)
class ResetPlan:
    """Where each partition of the topic goes for the group, and the group as it was."""

    group: GroupState
    topic: str
    to_time: datetime
    moves: tuple[Move, ...]

    def offsets(self) -> dict[int, int]:
        """The offsets to commit, by partition."""
        return {move.partition: move.target for move in self.moves}


async def plan_reset(cluster: Cluster, group: str, topic: str, to_time: datetime) -> ResetPlan:
    """Resolve the time to an offset per partition and read what the group has now."""
    partitions = await cluster.partitions(topic)
    time_ms = int(to_time.timestamp() * 1000)
    targets = await cluster.offsets_at(partitions, time_ms)
    beginnings = await cluster.beginnings(partitions)
    ends = await cluster.ends(partitions)
    committed = await cluster.committed(group, partitions)
    numbers = [tp.partition for tp in partitions]
    moves = tuple(Move(n, committed[n], beginnings[n], ends[n], targets[n]) for n in numbers)
    return ResetPlan(await cluster.group_state(group), topic, to_time, moves)


def print_plan(plan: ResetPlan, stream: IO[str]) -> None:
    """Show the plan, partition by partition, with what it re-reads and skips."""
    moment = plan.to_time.astimezone(UTC)
    precision = "milliseconds" if moment.microsecond else "seconds"
    when = moment.isoformat(timespec=precision).replace("+00:00", "Z")
    rows = [(m.partition, m.committed, m.target, f"{m.change:+d}", _basis(m)) for m in plan.moves]
    title = f"Reset of group {plan.group.group} on {plan.topic} to {when}"
    print_table(title, ("partition", "committed", "new", "change", "why"), rows, stream)
    reread = -sum(m.change for m in plan.moves if m.change < 0)
    skipped = sum(m.change for m in plan.moves if m.change > 0)
    stream.write(f"{reread} records will be delivered again, {skipped} skipped.\n")


def _basis(move: Move) -> str:
    if move.target == move.end:
        return "end: no record at or after the time"
    return "first record at or after the time"


async def reset(
    kafka: KafkaSettings,
    group: str,
    topic: str,
    to_time: datetime,
    *,
    force: bool = False,
    dry_run: bool = False,
    wait_s: float = 60.0,
    out: IO[str],
) -> int:
    """Plan the reset, print it, and commit it unless dry-run or refused; the exit code."""
    async with Cluster(kafka) as cluster:
        plan = await plan_reset(cluster, group, topic, to_time)
        print_plan(plan, out)
        if dry_run:
            out.write("Dry run: nothing committed.\n")
            if plan.group.active:
                out.write(_members_text(plan.group) + ": a real run would be refused.\n")
            return 0
        if plan.group.active and not force:
            raise GroupBusy(
                f"refusing to reset: {_members_text(plan.group)}. Stop the workers first, "
                "or use --force to wait for them to leave."
            )
        await _commit(cluster, plan, wait_s if force else 0.0, out)
        committed = await cluster.committed(group, await cluster.partitions(topic))
    if committed != plan.offsets():
        raise GroupBusy(f"the group's offsets are {committed} after the commit, not the plan")
    out.write(f"Committed the new offsets for group {group}.\n")
    return 0


async def _commit(cluster: Cluster, plan: ResetPlan, wait_s: float, out: IO[str]) -> None:
    """Commit as soon as the group has no members, waiting up to `wait_s` for that."""
    deadline = time.monotonic() + wait_s
    group = plan.group
    if group.active:
        out.write(f"{_members_text(group)}; waiting up to {wait_s:g} s for them to leave.\n")
    while True:
        if not group.active:
            try:
                await cluster.commit(group.group, plan.topic, plan.offsets())
                return
            except GroupBusy:
                pass  # a member joined between the look and the commit
        if time.monotonic() >= deadline:
            raise GroupBusy(
                f"gave up after {wait_s:g} s: {_members_text(group)}. Kafka accepts offsets from "
                "outside a group only when it has no members: stop the workers and run again."
            )
        await asyncio.sleep(_WAIT_PAUSE_S)
        group = await cluster.group_state(group.group)


def _members_text(group: GroupState) -> str:
    count = len(group.members)
    listed = ", ".join(group.members[:5]) + (", ..." if count > 5 else "")
    noun = "member" if count == 1 else "members"
    return f"group {group.group} is {group.state} with {count} live {noun} ({listed})"
