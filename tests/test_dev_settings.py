"""The development tools' settings: documented, and kept apart from the connector's."""

from __future__ import annotations

from pathlib import Path

from connector.config import ALL_GROUPS, describe_fields, env_name
from outgrow_braze_dev.settings import EVERY_GROUP, GROUPS

README = Path(__file__).resolve().parent.parent / "README.md"


def test_every_sandbox_setting_is_described_and_in_the_readme() -> None:
    text = README.read_text(encoding="utf-8")
    for group in GROUPS:
        for env, default, meaning in describe_fields(group):
            assert meaning, f"{env} has no description"
            assert f"| `{env}` | `{default}` |" in text, f"README lacks {env} with its default"


def test_the_connector_does_not_know_the_sandbox_settings() -> None:
    connector = {env_name(name) for group in ALL_GROUPS for name in group.model_fields}
    development = {env_name(name) for group in GROUPS for name in group.model_fields}
    assert "SANDBOX_PORT" in development
    assert connector & development == set()
    assert set(EVERY_GROUP) == set(ALL_GROUPS) | set(GROUPS)
