"""The development commands reach `outgrow-braze` only through the dev package's entry point.

A production install (the wheel, the image's runtime stage) lacks `outgrow-braze-dev`: there the
command line must offer none of `sandbox`, `local-kafka`, `bench` and `chaos`.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import io

import pytest

from connector import cli
from outgrow_braze_dev import commands
from tests.dev_support import DEV_DISTRIBUTION, production_install

# Each development command with the arguments it needs, as the dev package defines it.
DEV_COMMANDS = {
    "sandbox": (["sandbox"], commands.cmd_sandbox),
    "local-kafka": (["local-kafka", "--prepare-only"], commands.cmd_local_kafka),
    "bench": (["bench", "receiver"], commands.cmd_bench),
    "chaos": (["chaos", "--setting", "short"], commands.cmd_chaos),
}


def refusal(argv: list[str]) -> str:
    """What the command line says when it refuses `argv` (fails the test if it accepts it)."""
    stderr = io.StringIO()
    with pytest.raises(SystemExit) as refused, contextlib.redirect_stderr(stderr):
        cli.build_parser().parse_args(argv)
    assert refused.value.code == 2
    return stderr.getvalue()


def test_the_dev_package_registers_its_commands_under_the_plugin_group() -> None:
    entries = importlib.metadata.entry_points(group=cli.PLUGIN_GROUP)
    assert [(entry.dist and entry.dist.name, entry.load()) for entry in entries] == [
        (DEV_DISTRIBUTION, commands.add_commands)
    ]
    for argv, command in DEV_COMMANDS.values():
        assert cli.build_parser().parse_args(argv).func is command


@production_install()
def test_without_the_dev_package_the_cli_offers_no_dev_command() -> None:
    for name, (argv, _) in DEV_COMMANDS.items():
        assert f"invalid choice: '{name}'" in refusal(argv)
    assert cli.build_parser().parse_args(["worker"]).func is cli.cmd_worker


@production_install()
def test_without_the_dev_package_help_does_not_mention_them(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    text = capsys.readouterr().out
    assert "receiver" in text
    assert [name for name in DEV_COMMANDS if name in text] == []
