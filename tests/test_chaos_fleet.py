"""The fault test's processes: what each is pointed at, and how a stopped one ended."""

from __future__ import annotations

from pathlib import Path

import pytest

from outgrow_braze_dev.chaos_fleet import Exit, Wiring, probe_url, receiver, worker

WIRING = Wiring(
    "127.0.0.1:1,127.0.0.1:2,127.0.0.1:3", "c.raw", "c.dlq", "c.state",
    "http://127.0.0.1:9000", "sandbox-key", "chaos-group",
)  # fmt: skip


def test_a_worker_is_wired_to_the_run_and_keeps_its_state_in_the_run_s_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAW_TOPIC", "from-the-shell")  # the caller's settings never leak in
    monkeypatch.setenv("WORKER_MAX_PENDING_RECORDS", "100")
    service = worker(WIRING, 1, tmp_path)
    env = service.env
    assert env["RAW_TOPIC"] == "c.raw" and env["STATE_TOPIC"] == "c.state"
    assert "WORKER_MAX_PENDING_RECORDS" not in env
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == WIRING.bootstrap
    assert (env["BRAZE_REST_ENDPOINT"], env["BRAZE_API_KEY"]) == (WIRING.braze_url, "sandbox-key")
    assert env["CONSUMER_GROUP"] == "chaos-group"
    assert env["STATE_DIR"] == str(tmp_path / "state-1") and (tmp_path / "state-1").is_dir()
    assert env["WORKER_HOST"] == "127.0.0.1"
    assert probe_url(service, "WORKER_PORT") == f"http://127.0.0.1:{env['WORKER_PORT']}/readyz"
    assert service.log_file == tmp_path / "worker-1.log"
    assert not service.running


def test_the_receiver_listens_on_loopback_on_its_fixed_port(tmp_path: Path) -> None:
    env = receiver(WIRING, 18080, "chaos:password", tmp_path).env
    assert (env["RECEIVER_HOST"], env["RECEIVER_PORT"]) == ("127.0.0.1", "18080")
    assert env["WEBHOOK_BASIC_AUTH"] == "chaos:password"
    assert "BRAZE_API_KEY" not in env


def test_only_a_signal_that_reached_a_running_process_counts_as_a_stop() -> None:
    assert [exit_.stopped for exit_ in Exit] == [True, True, False, False]
