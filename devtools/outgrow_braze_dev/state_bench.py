"""`outgrow-braze bench state`: restoring the delivery state of many users, and screening.

It fills a fresh compacted state topic on the local broker (or KAFKA_BOOTSTRAP_SERVERS) with
`--state-users` users' state (10 attributes and 2 event keys each, spread over
`--state-partitions` partitions as the worker's guard places them), then runs a fresh Python
process, as a worker would be, that restores every partition into a new store and reports the
restore's seconds and records/s, the store file's size and the growth of its peak RSS. That
process then screens and confirms `--state-sample` of the users' re-submissions (one changed
attribute, one event delivered already and one new, in requests of 75 users) and reports the
CPU µs per record. Everything is bounded: the measuring process is stopped after 10 minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from connector.batching import Item
from connector.config import KafkaSettings, WorkerSettings, load
from connector.delivery_state import DeliveryState
from connector.mapping_results import BrazeUpdate
from connector.producer import partition_of
from connector.state_store import StateStore
from connector.state_topic import StateWriter, restore
from connector.state_value import StateValue, event_digest, name_digest, state_key, value_digest
from outgrow_braze_dev.kafka import BrokerUnavailable, provide_broker
from outgrow_braze_dev.loadgen import positive_int
from outgrow_braze_dev.worker_bench import peak_rss_mb

USERS = 1_000_000
PARTITIONS = 12
SAMPLE = 20_000
REQUEST_USERS = 75
MEASURE_TIMEOUT_S = 600.0
TARGET_MB = 150.0
TARGET_RESTORE_S = 30.0
EVENT = "outgrow_submission"
_FILL_CHUNK = 20_000
_SEGMENTS = ("Starter", "Growth Stage", "Scale", "Leader")
_CONTENT = tuple(f"Which plan suits you? ({n})" for n in range(5))
_BUDGETS = ("< $1k", "$1k-10k", "$10k-100k", "> $100k")


def add_state_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of `bench state`."""
    group = parser.add_argument_group("bench state", "Options of the delivery-state benchmark.")
    group.add_argument(
        "--state-users", type=positive_int, default=USERS, help=f"users with state ({USERS})"
    )
    group.add_argument(
        "--state-partitions",
        type=positive_int,
        default=PARTITIONS,
        help=f"state topic partitions ({PARTITIONS})",
    )
    group.add_argument(
        "--state-sample", type=positive_int, default=SAMPLE, help=f"users screened ({SAMPLE})"
    )


# --------------------------------------------------------------------------- the users


def user_key(user: int) -> str:
    """The bench user's Braze identity, as the mapping's identity rules would give it."""
    return f"email:state.user.{user}@example.com"


def attributes_of(user: int, changed: bool = False) -> dict[str, Any]:
    """The user's ten attributes; `changed` moves the quiz score (one in ten changes)."""
    return {
        "outgrow_quiz_score": (user + changed) % 100,
        "outgrow_custom_segment": _SEGMENTS[user % 4],
        "outgrow_last_content": _CONTENT[user % 5],
        "outgrow_last_submitted_at": f"2026-12-0{1 + user % 7}T10:{user % 60:02d}:00.000Z",
        "first_name": f"First{user % 5_000}",
        "last_name": f"Last{user % 7_919}",
        "phone": f"+1 202 555 {user % 10_000:04d}",
        "q_budget": _BUDGETS[user % 4],
        "q_team_size": user % 50,
        "q_newsletter": user % 3 == 0,
    }


def lead_ids(user: int) -> tuple[str, str]:
    """The user's two submissions already delivered."""
    return f"lead-{user}-a", f"lead-{user}-b"


def state_value(user: int, position: int, minute: int) -> bytes:
    """The state record's value once Braze confirmed the user's two submissions."""
    state = StateValue()
    for name, value in attributes_of(user).items():
        state.set_attribute(name_digest(name), value_digest(value), position)
    for lead in lead_ids(user):
        state.add_event(event_digest(EVENT, lead), minute)
    return state.encode()


def home(user: int, partitions: int) -> int:
    """The partition the worker's guard expects the user's records in."""
    return partition_of(user_key(user).encode(), partitions)


# --------------------------------------------------------------------------- filling


async def fill(kafka: KafkaSettings, topic: str, users: int, partitions: int) -> None:
    """Create the compacted state topic and write every user's state into it."""
    admin = AIOKafkaAdminClient(**_admin_kwargs(kafka))
    await admin.start()
    try:
        configs = {"cleanup.policy": "compact"}
        await admin.create_topics([NewTopic(topic, partitions, 1, topic_configs=configs)])
    finally:
        await admin.close()
    minute = int(time.time() // 60)
    async with StateWriter(kafka, topic, linger_ms=20) as writer:
        for start in range(0, users, _FILL_CHUNK):
            records: dict[int, list[tuple[bytes, bytes]]] = {}
            for user in range(start, min(start + _FILL_CHUNK, users)):
                row = (state_key(user_key(user)), state_value(user, user, minute))
                records.setdefault(home(user, partitions), []).append(row)
            await writer.write(records)


def _admin_kwargs(kafka: KafkaSettings) -> dict[str, Any]:
    return {"bootstrap_servers": kafka.kafka_bootstrap_servers, "client_id": "bench-state"}


# --------------------------------------------------------------------------- measuring


@dataclass(frozen=True)
class Figures:
    """What the measuring process found."""

    users: int
    records: int
    restore_s: float
    store_mb: float
    rss_growth_mb: float | None  # peak RSS growth, restore and screening
    restore_rss_growth_mb: float | None  # peak RSS growth by the end of the restore
    screen_confirm_us: float
    sample: int
    attributes_sent: int
    attributes_skipped: int
    events_sent: int
    events_skipped: int

    @property
    def records_per_s(self) -> float:
        return self.records / self.restore_s if self.restore_s else 0.0


async def measure(
    kafka: KafkaSettings, topic: str, partitions: int, users: int, sample: int
) -> Figures:
    """Restore every partition into a new store, then screen and confirm a sample."""
    cache_mb = WorkerSettings.model_fields["state_cache_mb"].default
    before = peak_rss_mb_self()
    with StateStore.open(None, cache_mb) as store:
        started = time.monotonic()
        restored = await restore(kafka, topic, range(partitions), store)
        restore_s = time.monotonic() - started
        restored_peak = peak_rss_mb_self()
        counts = _screen_sample(store, partitions, users, sample)
        after = peak_rss_mb_self()
        return Figures(
            users=sum(r.users for r in restored.values()),
            records=sum(r.records for r in restored.values()),
            restore_s=restore_s,
            store_mb=store.size_bytes() / 1e6,
            rss_growth_mb=_growth(before, after),
            restore_rss_growth_mb=_growth(before, restored_peak),
            sample=sample,
            **counts,
        )


def _growth(before: float | None, after: float | None) -> float | None:
    return None if before is None or after is None else after - before


def peak_rss_mb_self() -> float | None:
    """This process's peak resident set size in MB, where /proc tells it."""
    return peak_rss_mb(os.getpid())


def _screen_sample(store: StateStore, partitions: int, users: int, sample: int) -> dict[str, Any]:
    """Screen and confirm re-submissions of `sample` users, a request of 75 users at a time.

    Each request's records are made just before it, outside the measured time, and dropped
    after it, as a worker's queue holds only so many: the memory measured is the state's.
    """
    state = DeliveryState(store, window_days=30.0)
    chosen = [n * users // sample for n in range(sample)]
    sent = skipped = events_sent = events_skipped = 0
    cpu_s = 0.0
    for start in range(0, sample, REQUEST_USERS):
        items = [
            _resubmission(user, partitions, users) for user in chosen[start : start + REQUEST_USERS]
        ]
        began = time.process_time()
        kept: list[Item] = []
        for item in items:
            screened = state.screen(item.update.user_key, [item], partitions)
            kept += screened.kept
            skipped += screened.attributes_skipped_unchanged + screened.attributes_skipped_history
            events_skipped += screened.events_skipped
        state.confirm(kept, partitions)
        cpu_s += time.process_time() - began
        for item in kept:
            update: Any = item.update
            sent += len(update.attributes)
            events_sent += len(update.events)
    return {
        "screen_confirm_us": cpu_s / sample * 1e6,
        "attributes_sent": sent,
        "attributes_skipped": skipped,
        "events_sent": events_sent,
        "events_skipped": events_skipped,
    }


def _resubmission(user: int, partitions: int, users: int) -> Item:
    """The user's next submission: one attribute changed, its last lead again and a new one."""
    key = user_key(user)
    events = tuple({"name": EVENT, "time": "2026-12-08T10:00:00.000Z"} for _ in range(2))
    update = BrazeUpdate(
        key,
        {"email": key.removeprefix("email:")},
        attributes_of(user, changed=True),
        events,
        (lead_ids(user)[1], f"lead-{user}-c"),
    )
    return Item(home(user, partitions), users + user, update)


# --------------------------------------------------------------------------- running


def run_state_bench(args: argparse.Namespace) -> int:
    """Fill a state topic, measure restoring and screening in a fresh process, print it."""
    users, partitions = args.state_users, args.state_partitions
    sample = min(args.state_sample, users)
    try:
        with provide_broker() as broker:
            kafka = load(KafkaSettings, {"kafka_bootstrap_servers": broker.bootstrap_servers})
            topic = f"bench.state.{uuid.uuid4().hex[:8]}"
            began = time.monotonic()
            asyncio.run(fill(kafka, topic, users, partitions))
            fill_s = time.monotonic() - began
            figures = _measure_in_child(broker.bootstrap_servers, topic, partitions, users, sample)
    except (BrokerUnavailable, RuntimeError, subprocess.SubprocessError) as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    _report(figures, fill_s, as_json=bool(getattr(args, "json", False)))
    return 0 if figures.users == users else 1


def _measure_in_child(
    bootstrap: str, topic: str, partitions: int, users: int, sample: int
) -> Figures:
    """Run `measure` in a new interpreter, so that its memory is a worker's, not the filler's."""
    with tempfile.TemporaryDirectory(prefix="bench-state-") as scratch:
        out = Path(scratch) / "figures.json"
        command = [
            sys.executable,
            "-m",
            "outgrow_braze_dev.state_bench",
            bootstrap,
            topic,
            str(partitions),
            str(users),
            str(sample),
            str(out),
        ]
        done = subprocess.run(command, timeout=MEASURE_TIMEOUT_S, capture_output=True, check=False)
        if done.returncode != 0:
            tail = done.stderr.decode(errors="replace")[-2_000:]
            raise RuntimeError(f"the measuring process failed ({done.returncode}): {tail}")
        return Figures(**json.loads(out.read_text()))


def _report(figures: Figures, fill_s: float, *, as_json: bool) -> None:
    if as_json:
        print(json.dumps({**asdict(figures), "records_per_s": figures.records_per_s}))
        return
    rss = _megabytes(figures.restore_rss_growth_mb) + " by the end of the restore, "
    rss += _megabytes(figures.rss_growth_mb) + " by the end of the screening"
    print(f"filled {figures.users:,} users' state in {fill_s:.1f} s (not measured)")
    print(
        f"restore: {figures.records:,} records in {figures.restore_s:.1f} s "
        f"= {figures.records_per_s:,.0f} records/s (target <= {TARGET_RESTORE_S:g} s)"
    )
    print(f"store file: {figures.store_mb:.0f} MB")
    print(f"peak RSS growth: {rss} (target <= {TARGET_MB:g} MB)")
    print(
        f"screen + confirm: {figures.screen_confirm_us:.2f} CPU µs per record over "
        f"{figures.sample:,} re-submissions: attributes {figures.attributes_sent:,} sent, "
        f"{figures.attributes_skipped:,} unchanged; events {figures.events_sent:,} sent, "
        f"{figures.events_skipped:,} delivered already"
    )


def _megabytes(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.0f} MB"


def main(argv: list[str] | None = None) -> None:
    """The measuring process: bootstrap topic partitions users sample out-file."""
    bootstrap, topic, partitions, users, sample, out = argv or sys.argv[1:]
    kafka = load(KafkaSettings, {"kafka_bootstrap_servers": bootstrap})
    figures = asyncio.run(measure(kafka, topic, int(partitions), int(users), int(sample)))
    Path(out).write_text(json.dumps(asdict(figures)))


if __name__ == "__main__":
    main()
