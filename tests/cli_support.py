"""Run `outgrow-braze` commands from async tests: in a thread, since each runs its own loop."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import pytest

from connector import cli
from tests.worker_support import Pipeline


@dataclass(frozen=True)
class Outcome:
    """A command's exit code and what it printed."""

    code: int
    out: str
    err: str


async def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> Outcome:
    """Run one command to its end; the logging set-up it installs is undone afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        code = await asyncio.to_thread(cli.main, ["--log-format", "text", *argv])
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    captured = capsys.readouterr()
    return Outcome(code, captured.out, captured.err)


def kafka_options(
    line: Pipeline,
    *,
    raw: bool = True,
    dlq: bool = True,
    group: bool = True,
    state: bool = False,
) -> list[str]:
    """The options that point a command at a test pipeline's broker, topics and group; a
    command offers only the options it reads, so each one leaves out what it does not."""
    options = ["--kafka-bootstrap-servers", line.bootstrap]
    if raw:
        options += ["--raw-topic", line.topics.raw]
    if dlq:
        options += ["--dlq-topic", line.topics.topics.dlq_topic]
    if state:
        options += ["--state-topic", line.topics.topics.state_topic]
    return [*options, "--consumer-group", line.group] if group else options
