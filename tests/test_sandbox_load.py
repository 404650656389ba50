"""The built-in load generator with a key, against a real sandbox."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import orjson

from connector.config import load
from outgrow_braze_dev import loadgen
from outgrow_braze_dev.sandbox.app import running
from outgrow_braze_dev.sandbox.bench import write_track_bodies
from outgrow_braze_dev.sandbox.client import SandboxClient
from outgrow_braze_dev.sandbox.load import run_load
from outgrow_braze_dev.settings import SandboxSettings


async def test_every_post_carries_the_key(tmp_path: Path) -> None:
    bodies = loadgen.read_bodies(write_track_bodies(tmp_path / "bodies.jsonl", count=20))
    settings = load(SandboxSettings, {"sandbox_port": 0, "sandbox_api_key": "load-key"})
    async with running(settings) as url:
        plan = loadgen.Load(url + "/users/track", 0.3, 2, 40, bodies)
        summary = await run_load(plan, "load-key")
        refused = await run_load(loadgen.Load(url + "/users/track", 0.2, 1, 5, bodies), "bad")
        async with SandboxClient(url) as client:
            stats = await client.stats()
    assert summary["requests"] > 0 and summary["non_2xx"] == {} and summary["errors"] == 0
    assert stats["requests"]["/users/track"]["201"] == summary["requests"]
    assert refused["non_2xx"] == {"401": refused["requests"]}


async def test_the_command_prints_one_json_line(tmp_path: Path) -> None:
    body_file = write_track_bodies(tmp_path / "bodies.jsonl", count=5)
    settings = load(SandboxSettings, {"sandbox_port": 0, "sandbox_api_key": "load-key"})
    async with running(settings) as url:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "outgrow_braze_dev.sandbox.load",
            *("--url", url + "/users/track", "--duration", "0.3", "--connections", "2"),
            *("--max-requests", "10", "--body-file", str(body_file), "--api-key", "load-key"),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, stderr
    [line] = stdout.decode().splitlines()
    summary = orjson.loads(line)
    assert 0 < summary["requests"] <= 10
    assert summary["non_2xx"] == {}
