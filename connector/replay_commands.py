"""The `replay` and `dlq` commands: argument parsing and output around `connector.replay`."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from typing import IO, Any

import orjson

from connector.config import KafkaSettings, TopicSettings, WorkerSettings, require_braze
from connector.dlq import Listing
from connector.intake import map_source
from connector.kafka_security import start_consumer
from connector.mapping import MappingFailure, load_mapping
from connector.options import PRODUCER_ONLY, add_settings_options, run_async, settings, subparser
from connector.replay import (
    Plan,
    Range,
    Selection,
    Tally,
    deliver,
    dry_run,
    make_plan,
    parse_offsets,
    read_range,
    replay_consumer,
)
from connector.times import parse_time

REPLAY_EXAMPLES = """\
  outgrow-braze replay --from-time 2026-11-01T00:00:00Z --to-time 2026-11-02T00:00:00Z
  outgrow-braze replay --mapping new.yaml --dry-run > objects.jsonl
  outgrow-braze replay --from-offsets 0:1200,1:980 --rate-share 0.2
  outgrow-braze replay --identity jane@example.com --resend"""


def cmd_replay(args: argparse.Namespace) -> int:
    """Re-read the raw topic (or the dead-letter topic) and deliver it again."""
    kafka, topics = settings(args, KafkaSettings), settings(args, TopicSettings)
    worker = settings(args, WorkerSettings)
    if not args.dry_run:  # a dry run sends nothing to Braze
        require_braze(worker)
    mapping = load_mapping(args.mapping or worker.mapping_file)
    topic = topics.dlq_topic if args.dead_letters else topics.raw_topic
    bounds = Range(
        from_time=parse_time(args.from_time) if args.from_time else None,
        to_time=parse_time(args.to_time) if args.to_time else None,
        from_offsets=parse_offsets(args.from_offsets),
        to_offsets=parse_offsets(args.to_offsets),
    )
    selection = Selection(args.source, args.identity, args.reason, args.attributes_only)
    if args.with_events:
        print(
            "note: --with-events is no longer needed: events are sent by default, each"
            " de-duplication key once (--attributes-only leaves them out)",
            file=sys.stderr,
        )
    if args.resend and not args.dry_run:
        print(
            "warning: --resend sends everything again, events Braze has already included;"
            " Braze counts each one",
            file=sys.stderr,
        )
    with _output(args) as out:
        tally: Tally = run_async(
            _replay(kafka, topics, worker, mapping, topic, bounds, selection, args, out)
        )
    print(f"replay done: {tally.line()}", file=sys.stderr)
    return 1 if tally.dead_lettered else 0


async def _replay(
    kafka: KafkaSettings,
    topics: TopicSettings,
    worker: WorkerSettings,
    mapping: Any,
    topic: str,
    bounds: Range,
    selection: Selection,
    args: argparse.Namespace,
    out: Any,
) -> Tally:
    consumer = replay_consumer(kafka, topics)
    await start_consumer(consumer, kafka)
    try:
        plan = await make_plan(kafka, consumer, topic, bounds)
        print(_plan_line(plan), file=sys.stderr)
        if args.dry_run:
            return await _dry(consumer, plan, mapping, selection, out)
        return await deliver(
            consumer,
            plan,
            mapping,
            selection,
            kafka,
            topics,
            worker,
            args.rate_share,
            resend=args.resend,
        )
    finally:
        await consumer.stop()


@contextlib.contextmanager
def _output(args: argparse.Namespace) -> Iterator[IO[str]]:
    if not args.dry_run or args.output == "-":
        yield sys.stdout
        return
    with open(args.output, "w", encoding="utf-8") as out:
        yield out


def _plan_line(plan: Plan) -> str:
    ranges = ", ".join(f"{p}:{plan.starts[p]}-{plan.ends[p]}" for p in sorted(plan.starts))
    return f"replaying {plan.total} records of {plan.topic} ({ranges})"


async def _dry(consumer: Any, plan: Plan, mapping: Any, selection: Selection, out: Any) -> Tally:
    return await dry_run(consumer, plan, mapping, selection, out)


def cmd_dlq_list(args: argparse.Namespace) -> int:
    """List open dead letters grouped by stage and reason."""
    listing = run_async(_listing(args))
    rows = listing.by_reason()
    if args.json:
        print(
            orjson.dumps(
                [{"stage": s, "reason": r, "count": n} for (s, r), n in rows.items()]
            ).decode()
        )
        return 0
    if not rows:
        print("no open dead letters")
    for (stage, reason), count in rows.most_common():
        print(f"{count:>8}  {stage:<6} {reason}")
    return 0


async def _listing(args: argparse.Namespace) -> Listing:
    kafka, topics = settings(args, KafkaSettings), settings(args, TopicSettings)
    consumer = replay_consumer(kafka, topics)
    await start_consumer(consumer, kafka)
    records: list[Any] = []
    try:
        plan = await make_plan(kafka, consumer, topics.dlq_topic, Range())
        await read_range(consumer, plan, records.append)
    finally:
        await consumer.stop()
    return Listing.of(records)


def cmd_dlq_show(args: argparse.Namespace) -> int:
    """Show one dead letter: its headers, its body and the Braze objects it maps to now."""
    partition, _, offset = args.position.partition(":")
    if not partition.isdigit() or not offset.isdigit():
        print("outgrow-braze: give the dead letter as partition:offset", file=sys.stderr)
        return 2
    listing = run_async(_listing(args))
    record = listing.find(int(partition), int(offset))
    if record is None:
        print(f"no open dead letter at {args.position}", file=sys.stderr)
        return 1
    mapping = load_mapping(args.mapping or settings(args, WorkerSettings).mapping_file)
    for name, value in record.headers:
        print(f"{name}: {value.decode('utf-8', 'replace')}")
    print()
    print(record.value.decode("utf-8", "replace"))
    print()
    try:
        result = map_source(mapping, record)
        shown: Any = getattr(result, "rule", None) or {
            "attributes": [result.attribute_object()],  # type: ignore[union-attr]
            "events": result.event_objects(),  # type: ignore[union-attr]
        }
    except MappingFailure as failure:
        shown = {"cannot map": failure.reason, "stage": failure.stage}
    print(orjson.dumps(shown, option=orjson.OPT_INDENT_2).decode())
    return 0


# What replay reads of the worker's settings: not its service's (health port, group, commits,
# static membership), nor its share of the budget, which --rate-share gives.
NOT_REPLAY = (
    "worker_host",
    "worker_port",
    "consumer_group",
    "worker_instance_id",
    "worker_session_timeout_s",
    "worker_commit_interval_s",
    "worker_fetch_max_bytes",
    "braze_rate_share",
)
REPLAY_TOPICS = ("raw_topic", "dlq_topic", "state_topic", "topic_max_message_bytes")
LISTING_TOPICS = ("dlq_topic", "topic_max_message_bytes")


def add_replay_commands(commands: Any) -> None:
    """Register `replay` and `dlq` on the top-level parser."""
    sub = subparser(commands, "replay", cmd_replay, REPLAY_EXAMPLES.strip())
    _replay_options(sub)
    dlq = commands.add_parser("dlq", help="Inspect and redrive the dead-letter topic.")
    verbs = dlq.add_subparsers(dest="verb", required=True, metavar="VERB")
    listing = subparser(verbs, "list", cmd_dlq_list, "outgrow-braze dlq list")
    listing.add_argument("--json", action="store_true", help="print JSON")
    show = subparser(verbs, "show", cmd_dlq_show, "outgrow-braze dlq show 3:117")
    show.add_argument("position", help="partition:offset of the dead letter")
    show.add_argument("--mapping", help="mapping file to show the objects with")
    for reader in (listing, show):
        add_settings_options(reader, KafkaSettings, but=PRODUCER_ONLY)
        add_settings_options(reader, TopicSettings, only=LISTING_TOPICS)
    add_settings_options(show, WorkerSettings, only=("mapping_file",))
    redrive = subparser(
        verbs, "redrive", cmd_replay, "outgrow-braze dlq redrive --reason 'Invalid email'"
    )
    _replay_options(redrive)
    redrive.set_defaults(dead_letters=True)


def _replay_options(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--from-time", help="ISO 8601 start (records at or after it)")
    sub.add_argument("--to-time", help="ISO 8601 end (records before it)")
    sub.add_argument("--from-offsets", help="start offsets, partition:offset,... (resume)")
    sub.add_argument("--to-offsets", help="end offsets (exclusive), partition:offset,...")
    sub.add_argument("--source", help="only records with this source label")
    sub.add_argument("--identity", help="only this user (e-mail, external id, ...)")
    sub.add_argument("--reason", help="only dead letters whose reason contains this text")
    sub.add_argument("--mapping", help="mapping file to use instead of MAPPING_FILE")
    sub.add_argument(
        "--attributes-only",
        action="store_true",
        help="leave events out (by default an event goes unless its key was delivered already)",
    )
    sub.add_argument(
        "--resend",
        action="store_true",
        help="send everything, ignoring what the delivery state says Braze has (it is updated)",
    )
    sub.add_argument("--with-events", action="store_true", help=argparse.SUPPRESS)
    sub.add_argument("--dry-run", action="store_true", help="print Braze objects, send nothing")
    sub.add_argument("--output", default="-", help="dry-run output file (default stdout)")
    sub.add_argument(
        "--rate-share", type=float, default=0.25, help="share of the Braze budget (default 0.25)"
    )
    sub.add_argument(
        "--dead-letters", action="store_true", help="replay the dead-letter topic instead"
    )
    add_settings_options(sub, KafkaSettings)
    add_settings_options(sub, TopicSettings, only=REPLAY_TOPICS)
    add_settings_options(sub, WorkerSettings, but=NOT_REPLAY)
