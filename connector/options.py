"""What every `outgrow-braze` command shares: its settings as options, its parser, its loop.

`connector.cli`, `connector.replay_commands` and the development commands build on these, so
that none of them imports another's module.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable, Collection, Coroutine
from typing import Any

from connector import config as cfg

Command = Callable[[argparse.Namespace], int]

EPILOG = "Exit codes: 0 done, 1 failed, 2 usage or configuration error."

# Only producers read these; consumers and admin clients read every other Kafka setting.
PRODUCER_ONLY = ("kafka_linger_ms",)


def add_settings_options(
    parser: argparse.ArgumentParser,
    group: type[cfg.SettingsT],
    only: Collection[str] | None = None,
    but: Collection[str] = (),
) -> None:
    """Offer the fields of a settings group (all, `only` those, or all `but` those) as options."""
    section = parser.add_argument_group(group.__name__, group.__doc__)
    rows = {env: (default, meaning) for env, default, meaning in cfg.describe_fields(group)}
    for name, field in group.model_fields.items():
        if (only is not None and name not in only) or name in but:
            continue
        env = cfg.env_name(name)
        default, meaning = rows[env]
        help_text = f"{meaning} [env {env}; default {default}]"
        flag = "--" + name.replace("_", "-")
        if field.annotation is bool:
            section.add_argument(
                flag,
                dest=name,
                action=argparse.BooleanOptionalAction,
                default=argparse.SUPPRESS,
                help=help_text,
            )
        else:
            section.add_argument(
                flag, dest=name, metavar=env, default=argparse.SUPPRESS, help=help_text
            )


def given(args: argparse.Namespace, group: type[cfg.SettingsT]) -> dict[str, Any]:
    """The fields of a settings group given as command-line options."""
    return {name: value for name, value in vars(args).items() if name in group.model_fields}


def settings(args: argparse.Namespace, group: type[cfg.SettingsT]) -> cfg.SettingsT:
    """Load one settings group: environment first, command-line options on top."""
    return cfg.load(group, given(args, group))


def braze_settings(args: argparse.Namespace) -> cfg.WorkerSettings:
    """Load the worker settings of a command that talks to Braze: endpoint and key required."""
    return cfg.require_braze(settings(args, cfg.WorkerSettings))


def run_async(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a command's coroutine on uvloop where it is installed."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is absent only on unsupported platforms
        return asyncio.run(coro)
    return uvloop.run(coro)


def subparser(commands: Any, name: str, command: Command, example: str) -> Any:
    """Add a subcommand whose help is the command's docstring, with an example and exit codes."""
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
