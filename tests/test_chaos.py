"""The fault test, short setting: a three-node cluster, workers stopped and killed, a broker, the
receiver and Braze down in turn, under a steady stream of leads; nothing acknowledged is lost."""

from __future__ import annotations

import argparse
import signal
from collections.abc import AsyncIterator

import pytest

from outgrow_braze_dev.chaos import (
    DEFAULT_MAX_DUPLICATES_PER_10K,
    add_chaos_arguments,
    run_chaos,
    setting_of,
)
from outgrow_braze_dev.chaos_plan import SHORT, Action
from outgrow_braze_dev.chaos_report import RunFigures, judge
from outgrow_braze_dev.chaos_run import ACTIONS


@pytest.fixture(scope="module")
async def runs(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[list[RunFigures]]:
    work_dir = tmp_path_factory.mktemp("chaos")
    yield await run_chaos(SHORT, [signal.SIGTERM, signal.SIGKILL], work_dir)


async def test_no_acknowledged_lead_is_lost_under_faults(runs: list[RunFigures]) -> None:
    assert [run.stop_signal for run in runs] == ["SIGTERM", "SIGKILL"]
    for run in runs:
        assert run.acknowledged + run.abandoned == SHORT.leads
        assert run.acknowledged > SHORT.leads // 2, run
        assert run.finished, run
        assert run.lost == 0, run
        assert run.delivered == run.acknowledged
        assert run.raw_records >= run.acknowledged
        assert run.dead_letters == 0


async def test_every_fault_of_the_schedule_really_happened(runs: list[RunFigures]) -> None:
    for run in runs:
        faults = run.faults
        assert faults.worker_stops == SHORT.worker_stops, run
        assert (faults.broker_kills, faults.broker_restarts) == (1, 1), run
        assert (faults.receiver_kills, faults.receiver_restarts) == (1, 1), run
        assert faults.braze_503s > 0, run
        assert faults.braze_429s > 0, run
        assert faults.exits_on_their_own == 0, run  # no process crashed under the faults


async def test_sigterm_restarts_send_no_duplicate_events(runs: list[RunFigures]) -> None:
    sigterm = next(run for run in runs if run.stop_signal == "SIGTERM")
    verdict = judge([sigterm], DEFAULT_MAX_DUPLICATES_PER_10K)
    assert verdict.passed, verdict.failures


def test_command_line_chooses_the_setting_and_the_runs() -> None:
    parser = argparse.ArgumentParser()
    add_chaos_arguments(parser)
    args = parser.parse_args(
        ["--setting", "short", "--runs", "sigkill", "--leads", "100", "--max-duplicates-per-10k",
         "none"]
    )  # fmt: skip
    assert args.runs == [signal.SIGKILL]
    assert args.max_duplicates_per_10k is None
    setting = setting_of(args)
    assert (setting.name, setting.leads, setting.users) == ("short", 100, 50)
    defaults = parser.parse_args([])
    assert defaults.runs == [signal.SIGTERM, signal.SIGKILL]
    assert defaults.max_duplicates_per_10k == DEFAULT_MAX_DUPLICATES_PER_10K


@pytest.mark.parametrize(
    ("option", "value"),
    [("--runs", "sigint"), ("--runs", ""), ("--max-duplicates-per-10k", "-1"),
     ("--max-duplicates-per-10k", "many")],
)  # fmt: skip
def test_command_line_refuses_unknown_signals_and_bounds(
    option: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = argparse.ArgumentParser()
    add_chaos_arguments(parser)
    with pytest.raises(SystemExit):
        parser.parse_args([option, value])
    assert option in capsys.readouterr().err


def test_every_action_of_a_schedule_can_be_performed() -> None:
    assert set(ACTIONS) == set(Action)
