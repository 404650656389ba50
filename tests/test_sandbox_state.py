"""The sandbox's configuration, parsed from settings at the edge, and its shared state."""

from __future__ import annotations

from typing import Any

import pytest

from connector.config import load
from connector.errors import ConfigError
from outgrow_braze_dev.sandbox.contract import ObjectLimit
from outgrow_braze_dev.sandbox.faults import FaultSettings
from outgrow_braze_dev.sandbox.state import SandboxConfig, SandboxState
from outgrow_braze_dev.settings import SandboxSettings


def _config(**overrides: Any) -> SandboxConfig:
    return SandboxConfig.from_settings(load(SandboxSettings, {"sandbox_faults": "", **overrides}))


def test_defaults_match_braze(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SANDBOX_PORT", "SANDBOX_HOST", "SANDBOX_MAX_OBJECTS", "SANDBOX_FAULTS"):
        monkeypatch.delenv(name, raising=False)
    config = SandboxConfig.from_settings(load(SandboxSettings))
    assert (config.host, config.port) == ("127.0.0.1", 9090)
    assert config.object_limit == ObjectLimit(75, per_array=False)
    assert config.track_budget == (3_000, 3.0)
    assert config.export_budget == (250, 60.0)
    assert config.max_body_bytes == 4 * 1024 * 1024
    assert config.faults == FaultSettings()


def test_settings_reach_the_config() -> None:
    config = _config(
        sandbox_max_objects="50",
        sandbox_legacy_object_limit="true",
        sandbox_faults='{"error_rate": 0.1, "storm_s": 5}',
        sandbox_track_rate_limit="10",
    )
    assert config.object_limit == ObjectLimit(50, per_array=True)
    assert config.faults == FaultSettings(error_rate=0.1, storm_s=5)
    assert config.track_budget == (10, 3.0)


@pytest.mark.parametrize("faults", ["{", "[]", '{"error_rate": 2}', '{"unknown": 1}', '"text"'])
def test_bad_start_up_faults_name_the_setting(faults: str) -> None:
    with pytest.raises(ConfigError, match="SANDBOX_FAULTS"):
        _config(sandbox_faults=faults)


def test_out_of_range_settings_name_the_variable() -> None:
    with pytest.raises(ConfigError, match="SANDBOX_MAX_OBJECTS"):
        _config(sandbox_max_objects=0)
    with pytest.raises(ConfigError, match="SANDBOX_TRACK_RATE_WINDOW_S"):
        _config(sandbox_track_rate_window_s=0)


def test_state_reset_returns_to_start_up() -> None:
    state = SandboxState(_config(sandbox_faults='{"drop_rate": 1}'))
    state.faults.clear()
    state.track_limiter.take()
    state.stats.answered("/users/track", 201)
    state.reset()
    assert state.faults.settings == FaultSettings(drop_rate=1)
    assert state.track_limiter.peek().remaining == 3_000
    assert state.stats.snapshot()["requests"] == {}
