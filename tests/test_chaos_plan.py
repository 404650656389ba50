"""The fault test's schedule: every fault once, inside the stream, in time order."""

from __future__ import annotations

import dataclasses
from collections import Counter

import pytest

from outgrow_braze_dev.chaos_plan import FULL, SETTINGS, SHORT, Action, ChaosSetting, schedule


@pytest.mark.parametrize("setting", [SHORT, FULL], ids=lambda s: s.name)
def test_schedule_holds_every_fault_inside_the_stream_in_order(setting: ChaosSetting) -> None:
    faults = schedule(setting)
    counts = Counter(fault.action for fault in faults)
    assert counts[Action.STOP_WORKER] == setting.worker_stops
    for action in Action:
        if action is not Action.STOP_WORKER:
            assert counts[action] == 1, action
    times = [fault.at_s for fault in faults]
    assert times == sorted(times)
    assert times[0] > 0 and times[-1] < setting.stream_s


def test_each_restart_follows_its_kill_by_the_setting_s_downtime() -> None:
    at = {fault.action: fault.at_s for fault in schedule(SHORT)}
    assert at[Action.RESTART_BROKER] - at[Action.KILL_BROKER] == pytest.approx(SHORT.broker_down_s)
    assert at[Action.RESTART_RECEIVER] - at[Action.KILL_RECEIVER] == pytest.approx(
        SHORT.receiver_down_s
    )


def test_braze_faults_last_as_the_setting_says_and_come_before_the_broker_dies() -> None:
    faults = {fault.action: fault for fault in schedule(FULL)}
    outage, storm = faults[Action.BRAZE_OUTAGE], faults[Action.RATE_LIMIT_STORM]
    assert (outage.lasting_s, storm.lasting_s) == (FULL.outage_s, FULL.storm_s)
    assert outage.at_s + outage.lasting_s <= storm.at_s
    assert storm.at_s + storm.lasting_s <= faults[Action.KILL_BROKER].at_s


def test_worker_stops_are_evenly_spaced() -> None:
    setting = dataclasses.replace(SHORT, leads=400, rate_per_s=40.0, worker_stops=4)
    stops = [f.at_s for f in schedule(setting) if f.action is Action.STOP_WORKER]
    assert stops == pytest.approx([2.0, 4.0, 6.0, 8.0])


def test_settings_are_named_by_their_name() -> None:
    assert SETTINGS == {"short": SHORT, "full": FULL}
    assert SHORT.stream_s < FULL.stream_s
