"""The `outgrow-braze` command: one subcommand per role, settings from env or options."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from connector import config as cfg
from connector.config import (
    KafkaSettings,
    LogSettings,
    ReceiverSettings,
    SandboxSettings,
    TopicSettings,
    WorkerSettings,
)
from connector.errors import ConfigError, ConnectorError

Command = Callable[[argparse.Namespace], int]

EPILOG = "Exit codes: 0 done, 1 failed, 2 usage or configuration error."


def add_settings_options(parser: argparse.ArgumentParser, *groups: type[Any]) -> None:
    """Offer every field of the given settings groups as `--option`, naming its env variable."""
    for group in groups:
        section = parser.add_argument_group(group.__name__, group.__doc__)
        for name, field in group.model_fields.items():
            flag = "--" + name.replace("_", "-")
            env, default, meaning = next(
                row for row in cfg.describe_fields(group) if row[0] == cfg.env_name(name)
            )
            help_text = f"{meaning} [env {env}; default {default}]"
            if field.annotation is bool:
                action: Any = argparse.BooleanOptionalAction
                section.add_argument(
                    flag, dest=name, action=action, default=argparse.SUPPRESS, help=help_text
                )
            else:
                section.add_argument(
                    flag, dest=name, metavar=env, default=argparse.SUPPRESS, help=help_text
                )


def settings(args: argparse.Namespace, group: type[cfg.SettingsT]) -> cfg.SettingsT:
    """Load one settings group: environment first, command-line options on top."""
    given = {name: value for name, value in vars(args).items() if name in group.model_fields}
    return cfg.load(group, given)


def _run(coro: Coroutine[Any, Any, Any]) -> Any:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is absent only on unsupported platforms
        return asyncio.run(coro)
    return uvloop.run(coro)


def cmd_receiver(args: argparse.Namespace) -> int:
    """Run the webhook receiver."""
    from connector.receiver import ReceiverConfig, serve

    conf = ReceiverConfig(
        kafka=settings(args, KafkaSettings),
        topics=settings(args, TopicSettings),
        receiver=settings(args, ReceiverSettings),
    )
    # Credentials are checked before anything starts, so a bad setting fails fast.
    from connector.auth import credentials_from

    credentials_from(conf.receiver)
    _run(serve(conf))
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    """Run the delivery worker: raw topic -> mapping -> Braze, dead letters, commits."""
    from connector.braze import RateBudget
    from connector.mapping import load_mapping
    from connector.worker import WorkerConfig, serve

    conf = WorkerConfig(
        kafka=settings(args, KafkaSettings),
        topics=settings(args, TopicSettings),
        worker=settings(args, WorkerSettings),
    )
    # Check the mapping and the budget before connecting to anything.
    load_mapping(conf.worker.mapping_file)
    RateBudget.parse(conf.worker.braze_rate_limit)
    _run(serve(conf))
    return 0


def cmd_local_kafka(args: argparse.Namespace) -> int:
    """Run a local single-node Kafka broker in the foreground."""
    from connector.dev.kafka import run_local_kafka

    return run_local_kafka(port=args.port, prepare_only=args.prepare_only)


def cmd_topics_ensure(args: argparse.Namespace) -> int:
    """Create the raw and dead-letter topics where missing."""
    from connector.topics import ensure_topics

    kafka, topics = settings(args, KafkaSettings), settings(args, TopicSettings)
    created = _run(ensure_topics(kafka, topics))
    for name in (topics.raw_topic, topics.dlq_topic):
        print(f"{name}: {'created' if name in created else 'exists'}")
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
        }
    print(json.dumps(output, indent=2, ensure_ascii=False))
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    """Print every setting with its environment variable, default and meaning."""
    print("| Variable | Default | Meaning |")
    print("| --- | --- | --- |")
    for group in cfg.ALL_GROUPS:
        for env, default, meaning in cfg.describe_fields(group):
            print(f"| `{env}` | `{default}` | {meaning} |")
    return 0


def cmd_sandbox(args: argparse.Namespace) -> int:
    """Run the local Braze sandbox; print its base URL on the first line once it is ready."""
    from connector.dev.sandbox.app import serve
    from connector.dev.sandbox.state import SandboxConfig

    sandbox = settings(args, SandboxSettings)
    # Keys and faults are parsed before anything starts, so a bad setting fails fast.
    SandboxConfig.from_settings(sandbox)
    _run(serve(sandbox, ready=_print_line))
    return 0


def _print_line(text: str) -> None:
    print(text, flush=True)


def cmd_bench(args: argparse.Namespace) -> int:
    """Run a benchmark."""
    from connector.dev.bench import run_bench

    return run_bench(args)


def build_parser() -> argparse.ArgumentParser:
    """Describe the command line."""
    parser = argparse.ArgumentParser(
        prog="outgrow-braze",
        description="Move Outgrow submissions into Braze through Kafka.",
        epilog=EPILOG,
    )
    add_settings_options(parser, LogSettings)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_receiver(commands)
    _add_worker(commands)
    _add_local_kafka(commands)
    _add_topics(commands)
    _add_mapping(commands)
    _add_config(commands)
    _add_bench(commands)
    _add_sandbox(commands)
    return parser


def _subparser(commands: Any, name: str, command: Command, example: str) -> Any:
    doc = (command.__doc__ or "").strip()
    sub = commands.add_parser(
        name,
        help=doc,
        description=doc,
        epilog=f"Example:\n  {example}\n\n{EPILOG}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub.set_defaults(func=command)
    return sub


def _add_receiver(commands: Any) -> None:
    sub = _subparser(
        commands,
        "receiver",
        cmd_receiver,
        "WEBHOOK_BASIC_AUTH=outgrow:s3cret KAFKA_BOOTSTRAP_SERVERS=kafka:9092 "
        "outgrow-braze receiver",
    )
    add_settings_options(sub, KafkaSettings, TopicSettings, ReceiverSettings)


def _add_worker(commands: Any) -> None:
    sub = _subparser(
        commands,
        "worker",
        cmd_worker,
        "BRAZE_REST_ENDPOINT=https://rest.iad-01.braze.com BRAZE_API_KEY=... "
        "BRAZE_RATE_SHARE=0.5 outgrow-braze worker",
    )
    add_settings_options(sub, KafkaSettings, TopicSettings, WorkerSettings)


def _add_local_kafka(commands: Any) -> None:
    sub = _subparser(commands, "local-kafka", cmd_local_kafka, "outgrow-braze local-kafka")
    sub.add_argument("--port", type=int, default=0, help="broker port (default: a free one)")
    sub.add_argument(
        "--prepare-only", action="store_true", help="download and cache the jars, then exit"
    )


def _add_topics(commands: Any) -> None:
    topics = commands.add_parser("topics", help="Manage the connector's Kafka topics.")
    verbs = topics.add_subparsers(dest="verb", required=True, metavar="VERB")
    sub = _subparser(
        verbs, "ensure", cmd_topics_ensure, "TOPIC_PARTITIONS=24 outgrow-braze topics ensure"
    )
    add_settings_options(sub, KafkaSettings, TopicSettings)


def _add_mapping(commands: Any) -> None:
    mapping = commands.add_parser("mapping", help="Work with mapping files.")
    verbs = mapping.add_subparsers(dest="verb", required=True, metavar="VERB")
    sub = _subparser(
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
    _subparser(commands, "config", cmd_config, "outgrow-braze config > settings.md")


def _add_bench(commands: Any) -> None:
    from connector.dev.bench import add_bench_arguments

    sub = _subparser(commands, "bench", cmd_bench, "outgrow-braze bench receiver --duration 20")
    add_bench_arguments(sub)


def _add_sandbox(commands: Any) -> None:
    sub = _subparser(
        commands,
        "sandbox",
        cmd_sandbox,
        "SANDBOX_PORT=9090 SANDBOX_EXTRA_KEYS=reader:users.export.ids outgrow-braze sandbox",
    )
    add_settings_options(sub, SandboxSettings)


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
