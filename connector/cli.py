"""The `outgrow-braze` command: one subcommand per role, settings from env or options."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from connector import config as cfg
from connector.config import KafkaSettings, LogSettings, ReceiverSettings, TopicSettings
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


def cmd_config(args: argparse.Namespace) -> int:
    """Print every setting with its environment variable, default and meaning."""
    print("| Variable | Default | Meaning |")
    print("| --- | --- | --- |")
    for group in cfg.ALL_GROUPS:
        for env, default, meaning in cfg.describe_fields(group):
            print(f"| `{env}` | `{default}` | {meaning} |")
    return 0


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
    _add_local_kafka(commands)
    _add_topics(commands)
    _add_config(commands)
    _add_bench(commands)
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


def _add_config(commands: Any) -> None:
    _subparser(commands, "config", cmd_config, "outgrow-braze config > settings.md")


def _add_bench(commands: Any) -> None:
    from connector.dev.bench import add_bench_arguments

    sub = _subparser(commands, "bench", cmd_bench, "outgrow-braze bench receiver --duration 20")
    add_bench_arguments(sub)


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
