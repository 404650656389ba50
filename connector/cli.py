"""The `outgrow-braze` command: one subcommand per role, settings from env or options."""

from __future__ import annotations

import argparse
import importlib.metadata
import sys
from collections.abc import Sequence
from typing import Any

from connector import config as cfg
from connector.config import (
    KafkaSettings,
    LogSettings,
    ReceiverSettings,
    TopicSettings,
    WorkerSettings,
)
from connector.errors import ConfigError, ConnectorError
from connector.options import (
    EPILOG,
    PRODUCER_ONLY,
    add_settings_options,
    braze_settings,
    given,
    run_async,
    settings,
    subparser,
)
from connector.replay_commands import add_replay_commands

# Packages that add subcommands register a function of the subparsers under this group.
PLUGIN_GROUP = "outgrow_braze.commands"
DISTRIBUTION = "outgrow-braze"


def cmd_receiver(args: argparse.Namespace) -> int:
    """Run the webhook receiver."""
    from connector.auth import credentials_from
    from connector.mapping import load_mapping
    from connector.receiver import ReceiverConfig, serve

    receiver = settings(args, ReceiverSettings)
    # Credentials and the mapping are checked before anything starts, so a bad one fails fast.
    credentials_from(receiver)
    conf = ReceiverConfig(
        kafka=settings(args, KafkaSettings),
        topics=settings(args, TopicSettings),
        receiver=receiver,
        mapping=load_mapping(settings(args, WorkerSettings).mapping_file),
        retired=cfg.retired_settings(),
    )
    run_async(serve(conf))
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    """Run the delivery worker: raw topic -> mapping -> Braze, dead letters, commits."""
    from connector.braze import RateBudget
    from connector.mapping import load_mapping
    from connector.worker import WorkerConfig, serve

    conf = WorkerConfig(
        kafka=settings(args, KafkaSettings),
        topics=settings(args, TopicSettings),
        worker=braze_settings(args),
    )
    # Check the mapping and the budget before connecting to anything.
    load_mapping(conf.worker.mapping_file)
    RateBudget.parse(conf.worker.braze_rate_limit)
    run_async(serve(conf))
    return 0


def cmd_topics_ensure(args: argparse.Namespace) -> int:
    """Create the raw, dead-letter and delivery-state topics where missing."""
    from connector.topics import ensure

    kafka, topics = settings(args, KafkaSettings), settings(args, TopicSettings)
    ensured = run_async(ensure(kafka, topics))
    for name in (topics.raw_topic, topics.dlq_topic, topics.state_topic):
        print(f"{name}: {'created' if name in ensured.created else 'exists'}")
    if ensured.mismatch is not None:
        print(f"warning: {ensured.mismatch.advice()}", file=sys.stderr)
    return 0


def cmd_mapping_check(args: argparse.Namespace) -> int:
    """Map one sample lead and print the Braze objects it produces, or why it cannot."""
    import json
    import time
    from pathlib import Path

    from connector.mapping import Filtered, MappingFailure, load_mapping, map_record

    mapping = load_mapping(args.mapping)
    try:
        sample = Path(args.sample).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the sample {args.sample}: {exc.strerror}") from None
    now_ms = time.time_ns() // 1_000_000
    received_at_ms = now_ms if args.received_at is None else args.received_at
    try:
        result = map_record(
            mapping, sample, args.content_type, source=args.source, received_at_ms=received_at_ms
        )
    except MappingFailure as exc:
        print(f"outgrow-braze: cannot map the sample ({exc.stage}): {exc.reason}", file=sys.stderr)
        return 1
    if isinstance(result, Filtered):
        output: dict[str, Any] = {"filtered_by": result.rule}
    else:
        attributes = result.attribute_object()
        output = {
            "attributes": [attributes] if attributes else [],
            "events": result.event_objects(),
            # Each event's de-duplication key (null: sent every time), by event name.
            "event_keys": {
                event["name"]: key
                for event, key in zip(result.events, result.event_keys, strict=True)
            },
        }
    print(json.dumps(output, indent=2, ensure_ascii=False))
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    """Print each setting's value in effect (secrets masked), where it came from and its meaning."""
    print("| Variable | Value | From | Meaning |")
    print("| --- | --- | --- | --- |")
    for group in cfg.ALL_GROUPS:
        for env, value, source, meaning in cfg.in_effect(group, given(args, group)):
            print(f"| `{env}` | `{value}` | {source} | {meaning} |")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    """Read one profile back from Braze and show its Outgrow attributes and events."""
    import json

    from connector.verify import Identity, as_json, print_profiles, verify

    identity = (
        Identity("email", args.email) if args.email else Identity("external_id", args.external_id)
    )
    profiles = run_async(verify(braze_settings(args), identity, args.prefix))
    if args.json:
        print(json.dumps(as_json(profiles), indent=2, ensure_ascii=False))
    else:
        print_profiles(profiles, args.prefix, sys.stdout)
    if any(profile.has_data for profile in profiles):
        return 0
    print(f"outgrow-braze: {identity} has no {args.prefix}* data in Braze yet", file=sys.stderr)
    return 1


def cmd_status(args: argparse.Namespace) -> int:
    """Show the worker group's lag, the dead letters by reason, and the services' readiness."""
    import json

    from connector.status import collect, print_status

    worker, receiver = settings(args, WorkerSettings), settings(args, ReceiverSettings)
    urls = {
        "worker": args.worker_url or f"http://127.0.0.1:{worker.worker_port}",
        "receiver": args.receiver_url or f"http://127.0.0.1:{receiver.receiver_port}",
    }
    kafka, topics = settings(args, KafkaSettings), settings(args, TopicSettings)
    status = run_async(collect(kafka, topics, worker.consumer_group, urls, worker.braze_ca_file))
    if args.json:
        print(json.dumps(status.as_json(), indent=2, ensure_ascii=False))
    else:
        print_status(status, sys.stdout)
    return int(status.exit_code)


def cmd_offsets_reset(args: argparse.Namespace) -> int:
    """Move the worker group's committed offsets on the raw topic to a point in time."""
    from connector.offsets_reset import reset
    from connector.times import parse_time

    to_time = parse_time(args.to_time)
    kafka, topics = settings(args, KafkaSettings), settings(args, TopicSettings)
    group = settings(args, WorkerSettings).consumer_group
    options = {"force": args.force, "dry_run": args.dry_run, "wait_s": args.wait_s}
    return int(run_async(reset(kafka, group, topics.raw_topic, to_time, out=sys.stdout, **options)))


def build_parser() -> argparse.ArgumentParser:
    """Describe the command line."""
    parser = argparse.ArgumentParser(
        prog="outgrow-braze",
        description="Move Outgrow submissions into Braze through Kafka.",
        epilog=EPILOG,
    )
    version = importlib.metadata.version(DISTRIBUTION)
    parser.add_argument("--version", action="version", version=f"%(prog)s {version}")
    add_settings_options(parser, LogSettings)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_receiver(commands)
    _add_worker(commands)
    _add_topics(commands)
    _add_mapping(commands)
    _add_config(commands)
    _add_verify(commands)
    _add_status(commands)
    _add_offsets(commands)
    add_replay_commands(commands)
    _add_plugins(commands)
    return parser


def _add_plugins(commands: Any) -> None:
    """Add the commands other installed packages offer (the development tools, in a checkout)."""
    for entry in importlib.metadata.entry_points(group=PLUGIN_GROUP):
        entry.load()(commands)


def _add_receiver(commands: Any) -> None:
    sub = subparser(
        commands,
        "receiver",
        cmd_receiver,
        "WEBHOOK_BASIC_AUTH=outgrow:s3cret KAFKA_BOOTSTRAP_SERVERS=kafka:9092 "
        "outgrow-braze receiver",
    )
    add_settings_options(sub, KafkaSettings)
    # All of the topics' settings: RECEIVER_ENSURE_TOPICS creates them as `topics ensure` does.
    add_settings_options(sub, TopicSettings)
    add_settings_options(sub, ReceiverSettings)
    # Its identity rules key the records, so that one user's records share a partition.
    add_settings_options(sub, WorkerSettings, only=("mapping_file",))


def _add_worker(commands: Any) -> None:
    sub = subparser(
        commands,
        "worker",
        cmd_worker,
        "BRAZE_REST_ENDPOINT=https://rest.iad-01.braze.com BRAZE_API_KEY=... "
        "BRAZE_RATE_SHARE=0.5 outgrow-braze worker",
    )
    add_settings_options(sub, KafkaSettings)
    add_settings_options(sub, TopicSettings, only=WORKER_TOPICS)
    add_settings_options(sub, WorkerSettings)


def _add_topics(commands: Any) -> None:
    topics = commands.add_parser("topics", help="Manage the connector's Kafka topics.")
    verbs = topics.add_subparsers(dest="verb", required=True, metavar="VERB")
    sub = subparser(
        verbs, "ensure", cmd_topics_ensure, "TOPIC_PARTITIONS=24 outgrow-braze topics ensure"
    )
    add_settings_options(sub, KafkaSettings, but=PRODUCER_ONLY)
    add_settings_options(sub, TopicSettings)


def _add_mapping(commands: Any) -> None:
    mapping = commands.add_parser("mapping", help="Work with mapping files.")
    verbs = mapping.add_subparsers(dest="verb", required=True, metavar="VERB")
    sub = subparser(
        verbs,
        "check",
        cmd_mapping_check,
        "outgrow-braze mapping check --mapping my-mapping.yaml --sample lead.json --source acme",
    )
    sub.add_argument("--mapping", metavar="FILE", help="mapping file (default: the shipped one)")
    sub.add_argument("--sample", metavar="EVENT.json", required=True, help="a raw lead body")
    sub.add_argument("--source", default="default", help="the record's source label")
    sub.add_argument("--content-type", default="application/json", help="the sample's content type")
    sub.add_argument(
        "--received-at", type=int, metavar="MS", help="receive time in epoch ms (default: now)"
    )


def _add_config(commands: Any) -> None:
    sub = subparser(
        commands, "config", cmd_config, "RAW_TOPIC=leads outgrow-braze config --braze-timeout-s 5"
    )
    # Every setting, as the other commands would take it; logging's are the top-level options.
    for group in cfg.ALL_GROUPS:
        if group is not LogSettings:
            add_settings_options(sub, group)


# The topics the worker reads and dead-letters to (replay and redrive too).
WORKER_TOPICS = ("raw_topic", "dlq_topic", "state_topic", "topic_max_message_bytes")
# What `verify` reads to ask Braze for a profile.
BRAZE_OPTIONS = ("braze_rest_endpoint", "braze_api_key", "braze_timeout_s", "braze_ca_file")


def _add_verify(commands: Any) -> None:
    sub = subparser(
        commands,
        "verify",
        cmd_verify,
        "outgrow-braze verify --email jane@example.com\n"
        "  BRAZE_API_KEY=... outgrow-braze verify --external-id user-42 --json",
    )
    sub.description += (
        "\n\nUses POST /users/export/ids, so the key needs the users.export.ids permission."
        "\nExit 1 also when no profile matches or the profile holds no Outgrow data yet."
    )
    who = sub.add_mutually_exclusive_group(required=True)
    who.add_argument("--email", metavar="ADDR", help="look the profile up by e-mail address")
    who.add_argument("--external-id", metavar="ID", help="look the profile up by external id")
    sub.add_argument("--prefix", default="outgrow_", help="attribute and event name prefix shown")
    sub.add_argument("--json", action="store_true", help="print JSON instead of tables")
    add_settings_options(sub, WorkerSettings, only=BRAZE_OPTIONS)


def _add_status(commands: Any) -> None:
    sub = subparser(
        commands,
        "status",
        cmd_status,
        "outgrow-braze status --worker-url http://worker:8081 --receiver-url http://receiver:8080",
    )
    sub.description += (
        "\n\nNothing joins the consumer group. A service that cannot be reached is reported,"
        "\nnot fatal; exit 1 when Kafka cannot be read or a service answers not ready"
        "\n(e.g. a worker halted because Braze refuses its key)."
    )
    sub.add_argument("--worker-url", metavar="URL", help="default http://127.0.0.1:WORKER_PORT")
    sub.add_argument("--receiver-url", metavar="URL", help="default http://127.0.0.1:RECEIVER_PORT")
    sub.add_argument("--json", action="store_true", help="print JSON instead of tables")
    add_settings_options(sub, KafkaSettings, but=PRODUCER_ONLY)
    add_settings_options(sub, TopicSettings, only=("raw_topic", "dlq_topic", "state_topic"))
    add_settings_options(
        sub, WorkerSettings, only=("consumer_group", "worker_port", "braze_ca_file")
    )
    add_settings_options(sub, ReceiverSettings, only=("receiver_port",))


def _add_offsets(commands: Any) -> None:
    offsets = commands.add_parser("offsets", help="Manage the worker group's committed offsets.")
    verbs = offsets.add_subparsers(dest="verb", required=True, metavar="VERB")
    sub = subparser(
        verbs,
        "reset",
        cmd_offsets_reset,
        "outgrow-braze offsets reset --to-time 2026-11-28T10:00:00Z --dry-run",
    )
    sub.description += (
        "\n\nEach partition goes to its first record at or after the time, or to its end if"
        "\nit has none. Refused (exit 1) while the group has live members: Kafka takes"
        "\noffsets from outside a group only when it is empty; --force waits for them to leave."
    )
    sub.add_argument(
        "--to-time",
        required=True,
        metavar="ISO8601",
        help="e.g. 2026-11-28T10:00:00Z (UTC if no zone)",
    )
    sub.add_argument("--dry-run", action="store_true", help="print the plan, commit nothing")
    sub.add_argument(
        "--force",
        action="store_true",
        help="do not refuse a group with members: wait for them to leave, then commit",
    )
    sub.add_argument(
        "--wait-s",
        type=float,
        default=60.0,
        help="with --force, how long to wait for the members to leave (default 60)",
    )
    add_settings_options(sub, KafkaSettings, but=PRODUCER_ONLY)
    add_settings_options(sub, TopicSettings, only=("raw_topic",))
    add_settings_options(sub, WorkerSettings, only=("consumer_group",))


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line, set up logging and run the chosen command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        from connector.logs import configure

        configure(settings(args, LogSettings))
        code: int = args.func(args)
    except ConnectorError as exc:
        print(f"outgrow-braze: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ConfigError) else 1
    except KeyboardInterrupt:
        return 130
    return code
