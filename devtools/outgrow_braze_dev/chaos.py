"""`outgrow-braze chaos` (`make chaos`): the connector under faults, proving nothing is lost.

It starts a three-node KRaft cluster from the cached jars and, for each stop signal asked for
(SIGTERM, then SIGKILL), one run (`chaos_run.run_once`): fresh topics of three replicas, the
Braze sandbox, the receiver and workers as processes, a steady stream of leads to the receiver
on 127.0.0.1, and faults on a schedule. It reports per run the leads acknowledged, delivered,
lost and the duplicate events (per 10,000 leads and per worker stop), as a table or `--json`.

Exit 0 when every run passed; 1 when an acknowledged lead was lost, delivery did not finish within
its bound, or the SIGTERM run sent more duplicate events than `--max-duplicates-per-10k`; 2 when
the test could not be run. Everything it started is stopped and its files removed at the end, on
failure, Ctrl-C and SIGTERM too.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

from connector.errors import ConnectorError
from connector.signals import sigterm_as_interrupt
from outgrow_braze_dev.chaos_fleet import ProcessFailed
from outgrow_braze_dev.chaos_plan import SETTINGS, ChaosSetting
from outgrow_braze_dev.chaos_report import (
    RunFigures,
    UncountableEvents,
    Verdict,
    format_json,
    format_table,
    judge,
)
from outgrow_braze_dev.chaos_run import run_once, say
from outgrow_braze_dev.kafka import BrokerUnavailable
from outgrow_braze_dev.kafka_cluster import KafkaCluster
from outgrow_braze_dev.loadgen import positive_int

STOP_SIGNALS = {"sigterm": signal.SIGTERM, "sigkill": signal.SIGKILL}
DEFAULT_MAX_DUPLICATES_PER_10K = 1.0
_CANNOT_RUN = (BrokerUnavailable, ProcessFailed, ConnectorError, UncountableEvents, OSError)


async def run_chaos(
    setting: ChaosSetting, stop_signals: Iterable[signal.Signals], work_dir: Path
) -> list[RunFigures]:
    """Start the cluster, do one run per stop signal, stop the cluster; return the figures."""
    cluster = KafkaCluster()
    try:
        await asyncio.to_thread(cluster.start)
        say(f"three-node Kafka cluster at {cluster.bootstrap_servers}")
        return [await run_once(cluster, setting, how, work_dir) for how in stop_signals]
    finally:
        await asyncio.to_thread(cluster.close)


def chaos(setting: ChaosSetting, stop_signals: list[signal.Signals]) -> list[RunFigures]:
    """Run the fault test in a fresh event loop, its logs and state stores in a temporary
    directory removed after (a process that failed to start is reported with its log's end)."""
    work_dir = Path(tempfile.mkdtemp(prefix="outgrow-braze-chaos-"))
    try:
        with sigterm_as_interrupt():
            return asyncio.run(run_chaos(setting, stop_signals, work_dir))
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)


# --------------------------------------------------------------------------- command line


def _bound(text: str) -> float | None:
    if text.lower() == "none":
        return None
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number of 0 or more, or none; got {text!r}")
    return value


def _signals(text: str) -> list[signal.Signals]:
    names = [name.strip().lower() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in STOP_SIGNALS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"expected sigterm, sigkill or both; got {text!r}")
    return [STOP_SIGNALS[name] for name in dict.fromkeys(names)]


def add_chaos_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of `outgrow-braze chaos`."""
    parser.add_argument(
        "--setting", choices=sorted(SETTINGS), default="full", help="run size (full)"
    )
    parser.add_argument(
        "--runs",
        type=_signals,
        default=[signal.SIGTERM, signal.SIGKILL],
        help="how workers are stopped, one run each: sigterm,sigkill (both)",
    )
    parser.add_argument("--leads", type=positive_int, help="leads per run (the setting's)")
    parser.add_argument("--workers", type=positive_int, help="worker processes (the setting's)")
    parser.add_argument(
        "--max-duplicates-per-10k",
        type=_bound,
        default=DEFAULT_MAX_DUPLICATES_PER_10K,
        help="duplicate events per 10,000 leads the SIGTERM run may send, or none "
        f"({DEFAULT_MAX_DUPLICATES_PER_10K:g})",
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")


def setting_of(args: argparse.Namespace) -> ChaosSetting:
    """The chosen setting with the counts given on the command line."""
    setting = SETTINGS[args.setting]
    if args.leads:
        setting = dataclasses.replace(setting, leads=args.leads, users=max(1, args.leads // 2))
    if args.workers:
        setting = dataclasses.replace(setting, workers=args.workers)
    return setting


def run_chaos_command(args: argparse.Namespace) -> int:
    """Run `outgrow-braze chaos`; print the table or JSON; return the exit code."""
    setting = setting_of(args)
    try:
        runs = chaos(setting, args.runs)
    except _CANNOT_RUN as exc:
        print(f"chaos: could not run: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("chaos: interrupted; everything started was stopped", file=sys.stderr)
        return 2
    verdict: Verdict = judge(runs, args.max_duplicates_per_10k)
    if args.json:
        print(format_json(setting.name, runs, verdict))
    else:
        print(format_table(runs, verdict))
    return 0 if verdict.passed else 1
