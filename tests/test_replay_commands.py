"""The `replay` and `dlq` commands as operators type them."""

from __future__ import annotations

import orjson
import pytest

from outgrow_braze_dev.settings import SANDBOX_DEV_API_KEY
from tests.cli_support import kafka_options, run_cli
from tests.worker_support import lead, pipeline


async def test_dry_run_command_prints_objects_and_a_summary(
    bootstrap_servers: str, capsys: pytest.CaptureFixture[str]
) -> None:
    async with pipeline(bootstrap_servers) as line:
        await line.produce([lead(u, 0) for u in range(5)])
        replay = kafka_options(line, group=False)
        outcome = await run_cli(capsys, "replay", "--dry-run", *replay)
        assert line.sandbox.state.stats.snapshot()["requests"] == {}
    assert outcome.code == 0
    objects = [orjson.loads(text) for text in outcome.out.splitlines()]
    assert sorted(o["attributes"][0]["external_id"] for o in objects) == [
        f"user-{u}" for u in range(5)
    ]
    assert "replaying 5 records" in outcome.err
    assert "read 5, delivered 5, dead-lettered 0" in outcome.err


async def test_replay_command_delivers_and_dlq_commands_list_and_show(
    bootstrap_servers: str, capsys: pytest.CaptureFixture[str]
) -> None:
    async with pipeline(bootstrap_servers) as line:
        await line.produce([lead(1, 0), {"id": "nobody", "results": []}])
        replay = kafka_options(line, group=False, state=True)
        dlq = kafka_options(line, raw=False, group=False)
        braze = ["--braze-rest-endpoint", line.sandbox.base_url]
        braze += ["--braze-api-key", SANDBOX_DEV_API_KEY]
        replayed = await run_cli(capsys, "replay", *replay, *braze)
        listed = await run_cli(capsys, "dlq", "list", "--json", *dlq)
        letters = await line.dead_letters()
        where = f"{letters[0].partition}:{letters[0].offset}"
        shown = await run_cli(capsys, "dlq", "show", where, *dlq)
        missing = await run_cli(capsys, "dlq", "show", "0:999", *dlq)
        bad = await run_cli(capsys, "dlq", "show", "nonsense", *dlq)
        assert line.profile(1) is not None
    assert replayed.code == 1, "a record was dead-lettered"
    assert "dead-lettered 1" in replayed.err
    rows = orjson.loads(listed.out)
    assert [(row["stage"], row["count"]) for row in rows] == [("map", 1)]
    assert shown.code == 0 and "dlq-reason" in shown.out and '"nobody"' in shown.out
    assert "cannot map" in shown.out
    assert (missing.code, bad.code) == (1, 2)


async def test_help_has_examples_and_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["replay", "--help"], ["dlq", "redrive", "--help"], ["dlq", "list", "--help"]):
        with pytest.raises(SystemExit) as exited:
            await run_cli(capsys, *argv)
        assert exited.value.code == 0
        text = capsys.readouterr().out
        assert "Example" in text and "Exit codes" in text
