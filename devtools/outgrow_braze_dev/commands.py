"""The development commands `outgrow-braze` offers where this package is installed.

`sandbox`, `local-kafka` and `bench` are for people evaluating or developing the connector; the
production wheel and image do not carry them. The package registers `add_commands` under the
`outgrow_braze.commands` entry-point group, which `connector.cli` reads; it builds them with
`connector.options`, as the connector's own commands are built.
"""

from __future__ import annotations

import argparse
from typing import Any

from connector.options import add_settings_options, run_async, settings, subparser
from outgrow_braze_dev.settings import SandboxSettings


def cmd_local_kafka(args: argparse.Namespace) -> int:
    """Run a local single-node Kafka broker in the foreground."""
    from outgrow_braze_dev.kafka import run_local_kafka

    return run_local_kafka(port=args.port, prepare_only=args.prepare_only)


def cmd_sandbox(args: argparse.Namespace) -> int:
    """Run the local Braze sandbox; print its base URL on the first line once it is ready."""
    from outgrow_braze_dev.sandbox.app import serve
    from outgrow_braze_dev.sandbox.state import SandboxConfig

    sandbox = settings(args, SandboxSettings)
    # Keys and faults are parsed before anything starts, so a bad setting fails fast.
    SandboxConfig.from_settings(sandbox)
    run_async(serve(sandbox, ready=_print_line))
    return 0


def _print_line(text: str) -> None:
    print(text, flush=True)


def cmd_bench(args: argparse.Namespace) -> int:
    """Run a benchmark."""
    # Each target's module builds on outgrow_braze_dev.bench; choosing one here, not there,
    # keeps bench from importing them back.
    if args.target == "sandbox":
        from outgrow_braze_dev.sandbox.bench import run_sandbox_bench

        return run_sandbox_bench(args)
    if args.target == "replay":
        from outgrow_braze_dev.replay_bench import run_replay_bench

        return run_replay_bench(args)
    if args.target == "worker":
        from outgrow_braze_dev.worker_bench import run_worker_bench

        return run_worker_bench(args)
    if args.target == "state":
        from outgrow_braze_dev.state_bench import run_state_bench

        return run_state_bench(args)
    from outgrow_braze_dev.bench import run_receiver_bench

    return run_receiver_bench(args)


def add_commands(commands: Any) -> None:
    """Add `local-kafka`, `bench` and `sandbox` to the `outgrow-braze` command."""
    sub = subparser(commands, "local-kafka", cmd_local_kafka, "outgrow-braze local-kafka")
    sub.add_argument("--port", type=int, default=0, help="broker port (default: a free one)")
    sub.add_argument(
        "--prepare-only", action="store_true", help="download and cache the jars, then exit"
    )

    from outgrow_braze_dev.bench import add_bench_arguments
    from outgrow_braze_dev.state_bench import add_state_arguments
    from outgrow_braze_dev.worker_bench import add_worker_arguments

    sub = subparser(commands, "bench", cmd_bench, "outgrow-braze bench receiver --duration 20")
    add_bench_arguments(sub)
    add_worker_arguments(sub)
    add_state_arguments(sub)

    sub = subparser(
        commands,
        "sandbox",
        cmd_sandbox,
        "SANDBOX_PORT=9090 SANDBOX_EXTRA_KEYS=reader:users.export.ids outgrow-braze sandbox",
    )
    add_settings_options(sub, SandboxSettings)
