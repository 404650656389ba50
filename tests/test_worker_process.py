"""The worker as a process: killed without warning mid-stream, restarted, nothing lost."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from tests.worker_support import free_port, lead, pipeline, wait_for


def _env(line: object, port: int) -> dict[str, str]:
    settings = line.worker_settings(worker_port=port)  # type: ignore[attr-defined]
    topics = line.topics  # type: ignore[attr-defined]
    return {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": topics.kafka.kafka_bootstrap_servers,
        "RAW_TOPIC": topics.raw,
        "DLQ_TOPIC": topics.topics.dlq_topic,
        "STATE_TOPIC": topics.topics.state_topic,
        "BRAZE_REST_ENDPOINT": settings.braze_rest_endpoint,
        "BRAZE_API_KEY": settings.braze_api_key.get_secret_value(),
        "CONSUMER_GROUP": settings.consumer_group,
        "WORKER_HOST": "127.0.0.1",
        "WORKER_PORT": str(port),
        "WORKER_COMMIT_INTERVAL_S": "0.2",
        "BRAZE_RATE_LIMIT": "150/3s",
        "BRAZE_MAX_OBJECTS": "10",
        "LOG_LEVEL": "WARNING",
    }


async def _start(line: object) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "connector",
        "worker",
        env=_env(line, free_port()),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )


async def test_sigkill_mid_stream_then_restart_loses_nothing(bootstrap_servers: str) -> None:
    users = 300
    async with pipeline(bootstrap_servers) as line:
        await line.produce([lead(u, r) for r in range(2) for u in range(users)])
        first = await _start(line)
        await wait_for(lambda: len(line.sandbox.state.store) >= 50, 60)
        first.send_signal(signal.SIGKILL)
        await first.wait()
        assert first.returncode == -signal.SIGKILL
        delivered_before = len(line.sandbox.state.store)
        assert delivered_before < users, "the kill came too late to prove anything"

        second = await _start(line)
        try:
            await line.all_committed(timeout_s=120)
        finally:
            second.send_signal(signal.SIGTERM)
            _, stderr = await asyncio.wait_for(second.communicate(), timeout=60)
        assert second.returncode == 0, stderr.decode()[-2000:]
        assert await line.dead_letters() == []
        for user in range(users):
            profile = line.profile(user)
            assert profile is not None, f"user-{user} lost"
            assert profile.custom["outgrow_quiz_score"] == 1000 + user
            assert profile.events["outgrow_submission"].count >= 2
