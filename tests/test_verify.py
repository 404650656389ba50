"""`verify`: profiles delivered through the pipeline, read back from the sandbox's export."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from connector.verify import outgrow_profile
from outgrow_braze_dev.sandbox.app import Sandbox
from outgrow_braze_dev.sandbox.state import SandboxConfig
from outgrow_braze_dev.settings import SANDBOX_DEV_API_KEY
from tests.cli_support import Outcome, run_cli
from tests.worker_support import Pipeline, free_port, lead, pipeline, sandbox_settings

WRONG_KEY = "a-wrong-key-7f3c9e"


@pytest.fixture(scope="module")
async def delivered(bootstrap_servers: str) -> AsyncIterator[Pipeline]:
    """User 1 submitted twice and user 2, known by e-mail only, once; delivered into the sandbox."""
    email_only = lead(2, 0)
    del email_only["external_id"]
    async with pipeline(bootstrap_servers, sandbox_extra_keys="track-only-key:users.track") as line:
        await line.produce([lead(1, 0), lead(1, 1), email_only])
        line.start_worker()
        await line.all_committed()
        yield line


async def verify(capsys: pytest.CaptureFixture[str], endpoint: str, *args: str) -> Outcome:
    return await run_cli(
        capsys, "verify", "--braze-rest-endpoint", endpoint, *_key_unless_given(args), *args
    )


def _key_unless_given(args: tuple[str, ...]) -> list[str]:
    # Neither the endpoint nor the key has a default; a test that means another key gives it.
    return [] if "--braze-api-key" in args else ["--braze-api-key", SANDBOX_DEV_API_KEY]


async def test_a_delivered_profile_shows_its_outgrow_attributes_and_event_counts(
    delivered: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    result = await verify(capsys, delivered.sandbox.base_url, "--external-id", "user-1")
    assert result.code == 0, result.err
    assert "external_id user-1" in result.out
    assert "outgrow_quiz_score" in result.out and "1001" in result.out
    assert "segment-1" in result.out
    event_line = next(line for line in result.out.splitlines() if "outgrow_submission" in line)
    assert " 2 " in event_line

    as_json = await verify(capsys, delivered.sandbox.base_url, "--external-id", "user-1", "--json")
    (user,) = json.loads(as_json.out)["users"]
    assert user["attributes"]["outgrow_quiz_score"] == 1001
    assert user["attributes"]["outgrow_custom_segment"] == "segment-1"
    assert [(e["name"], e["count"]) for e in user["events"]] == [("outgrow_submission", 2)]
    assert all(name.startswith("outgrow_") for name in user["attributes"])


async def test_a_profile_is_found_by_email(
    delivered: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    result = await verify(
        capsys, delivered.sandbox.base_url, "--email", "user2@example.com", "--json"
    )
    assert result.code == 0, result.err
    (user,) = json.loads(result.out)["users"]
    assert user["email"] == "user2@example.com" and user["external_id"] is None
    assert user["attributes"]["outgrow_quiz_score"] == 2
    assert user["events"][0]["count"] == 1


async def test_an_unknown_user_exits_1(
    delivered: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    result = await verify(capsys, delivered.sandbox.base_url, "--email", "nobody@example.com")
    assert result.code == 1
    assert "no Braze profile has email nobody@example.com" in result.err


async def test_a_profile_without_outgrow_data_exits_1(
    delivered: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    result = await verify(
        capsys, delivered.sandbox.base_url, "--external-id", "user-1", "--prefix", "acme_"
    )
    assert result.code == 1
    assert "no acme_* attributes or events" in result.out


async def test_a_wrong_key_is_named_as_the_problem_and_never_printed(
    delivered: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    result = await verify(
        capsys,
        delivered.sandbox.base_url,
        "--external-id",
        "user-1",
        "--braze-api-key",
        WRONG_KEY,
    )
    assert result.code == 1
    assert "HTTP 401" in result.err and "BRAZE_API_KEY" in result.err
    assert WRONG_KEY not in result.out + result.err


async def test_a_key_without_the_export_permission_says_which_one_is_missing(
    delivered: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    result = await verify(
        capsys,
        delivered.sandbox.base_url,
        "--external-id",
        "user-1",
        "--braze-api-key",
        "track-only-key",
    )
    assert result.code == 1
    assert "HTTP 403" in result.err and "users.export.ids" in result.err


async def test_a_spent_export_budget_says_when_to_retry(
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = sandbox_settings(sandbox_export_rate_limit=1, sandbox_export_rate_window_s=60)
    async with Sandbox(SandboxConfig.from_settings(settings)) as sandbox:
        first = await verify(capsys, sandbox.base_url, "--external-id", "user-1")
        second = await verify(capsys, sandbox.base_url, "--external-id", "user-1")
    assert first.code == 1 and "no Braze profile" in first.err
    assert second.code == 1
    assert "HTTP 429" in second.err and "retry in" in second.err
    seconds = int(second.err.split("retry in ")[1].split(" s")[0])
    assert 0 < seconds <= 60


async def test_an_unreachable_endpoint_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    result = await verify(capsys, endpoint, "--external-id", "user-1")
    assert result.code == 1
    assert f"cannot reach Braze at {endpoint}" in result.err


def test_only_outgrow_attributes_and_events_are_kept_latest_event_first() -> None:
    user = {
        "external_id": "u",
        "custom_attributes": {"outgrow_b": 2, "plan": "pro", "outgrow_a": [1]},
        "custom_events": [
            {"name": "outgrow_old", "count": 1, "first": "2026-01-01", "last": "2026-01-01"},
            {"name": "signup", "count": 4, "first": "2026-01-01", "last": "2026-03-01"},
            {"name": "outgrow_new", "count": 3, "first": "2026-01-02", "last": "2026-02-01"},
        ],
    }
    profile = outgrow_profile(user)
    assert list(profile.attributes) == ["outgrow_a", "outgrow_b"]
    assert [(e.name, e.count) for e in profile.events] == [("outgrow_new", 3), ("outgrow_old", 1)]
    assert outgrow_profile({"external_id": "u"}).has_data is False
