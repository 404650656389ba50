"""`outgrow-braze bench state` at a tiny size: it restores every user and screens as it says."""

from __future__ import annotations

import argparse
import json

import pytest

from connector.config import KafkaSettings, load
from outgrow_braze_dev import state_bench


def test_the_state_target_and_its_defaults() -> None:
    parser = argparse.ArgumentParser()
    state_bench.add_state_arguments(parser)
    args = parser.parse_args([])
    assert (args.state_users, args.state_partitions, args.state_sample) == (1_000_000, 12, 20_000)


def test_a_users_state_value_records_its_attributes_and_two_submissions() -> None:
    from connector.state_value import StateValue

    state = StateValue(state_bench.state_value(7, position=7, minute=100))
    assert (state.attributes, state.events) == (10, 2)
    assert {position for _, _, position in state.attribute_entries()} == {7}


async def test_a_tiny_run_restores_every_user_and_skips_what_braze_has(
    bootstrap_servers: str,
) -> None:
    kafka = load(KafkaSettings, {"kafka_bootstrap_servers": bootstrap_servers})
    topic = "bench.state.test-" + bootstrap_servers.rsplit(":", 1)[1]
    users, partitions, sample = 1_500, 3, 300
    await state_bench.fill(kafka, topic, users, partitions)
    figures = await state_bench.measure(kafka, topic, partitions, users, sample)
    assert (figures.users, figures.records) == (users, users)
    assert figures.store_mb > 0 and figures.screen_confirm_us > 0
    # each re-submission: 1 of 10 attributes changed, its last lead again, one new lead
    assert (figures.attributes_sent, figures.attributes_skipped) == (sample, 9 * sample)
    assert (figures.events_sent, figures.events_skipped) == (sample, sample)


def test_the_command_measures_in_a_fresh_process(
    bootstrap_servers: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", bootstrap_servers)
    args = argparse.Namespace(state_users=800, state_partitions=2, state_sample=100, json=True)
    assert state_bench.run_state_bench(args) == 0
    report = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert report["users"] == report["records"] == 800
    assert report["rss_growth_mb"] is not None and report["rss_growth_mb"] >= 0
    assert report["events_skipped"] == 100
