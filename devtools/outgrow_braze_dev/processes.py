"""The processes a benchmark starts: their cores, ports, readiness line, CPU time and stop.

Shared by every benchmark (`bench receiver`, `bench sandbox`, `bench worker`), so that none of
them imports another.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import select
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from connector.config import env_name
from outgrow_braze_dev.settings import EVERY_GROUP

STOP_TIMEOUT_S = 30.0
SANDBOX_READY_TIMEOUT_S = 30.0


class BenchError(RuntimeError):
    """The benchmark could not be run; the message says why."""


@dataclass(frozen=True)
class CpuPlan:
    """Which cores the server under test and the load may use (None: not pinned)."""

    server: tuple[int, ...] | None
    load: tuple[int, ...] | None

    @classmethod
    def detect(cls) -> CpuPlan:
        """One core for the server and the rest for the load, when taskset exists."""
        if not shutil.which("taskset"):
            return cls(None, None)
        cpus = tuple(sorted(os.sched_getaffinity(0)))
        return cls(cpus[:1], cpus[1:] or None)

    def describe(self, server: str = "sandbox", load: str = "load") -> str:
        """A short sentence for the report, naming the server and the load as given."""
        if self.server is None:
            return "not pinned (taskset not found)"
        where = f"on cores {_cores(self.load)}" if self.load else "unpinned, same core"
        return f"{server} pinned to core {_cores(self.server)}, {load} {where}"


def _cores(cpus: tuple[int, ...] | None) -> str:
    return ",".join(str(cpu) for cpu in cpus or ())


def pinned(command: list[str], cpus: tuple[int, ...] | None) -> list[str]:
    """The command run under `taskset -c` when cores are given."""
    return ["taskset", "-c", _cores(cpus), *command] if cpus else command


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def clean_env() -> dict[str, str]:
    """This environment without any connector or sandbox setting, so that only a caller's apply."""
    ours = {env_name(name) for group in EVERY_GROUP for name in group.model_fields}
    return {key: value for key, value in os.environ.items() if key not in ours}


def start_connector(
    command: str, env: dict[str, str], cpus: tuple[int, ...] | None, *, stdout: Any, stderr: Any
) -> subprocess.Popen[bytes]:
    """Start `python -m connector COMMAND` (on `cpus` if given) with nothing on its stdin."""
    return subprocess.Popen(
        pinned([sys.executable, "-m", "connector", command], cpus),
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
    )


def read_first_line(process: subprocess.Popen[bytes], timeout_s: float) -> str:
    """The URL a server process prints as its first line once ready, within `timeout_s`."""
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout_s)
    line = process.stdout.readline().decode().strip() if ready else ""
    if not line.startswith("http://"):
        code = process.poll()
        raise BenchError(f"the sandbox printed no URL within {timeout_s:g} s (exit code {code})")
    return line


def cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system) a process has used so far, where /proc tells it."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def log_tail(log_file: Path, lines: int = 20) -> str:
    """The last lines of a process's log, or nothing if it cannot be read."""
    with contextlib.suppress(OSError):
        text = log_file.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.strip().splitlines()[-lines:])
    return ""


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, wait, then SIGKILL if it would not stop."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@dataclass(frozen=True)
class SandboxProcess:
    """A Braze sandbox started for a benchmark."""

    process: subprocess.Popen[bytes]
    base_url: str
    api_key: str
    log_file: Path

    def log_tail(self) -> str:
        """The last lines it wrote to standard error."""
        return log_tail(self.log_file)


@contextlib.contextmanager
def sandbox_process(
    environment: Callable[[int, str], dict[str, str]],
    cpus: tuple[int, ...] | None,
    log_file: Path,
) -> Iterator[SandboxProcess]:
    """Start `python -m connector sandbox` on a free port with a fresh key, in the environment
    `environment(port, key)` gives; wait for its URL line; always stop it at the end."""
    api_key, port = secrets.token_urlsafe(24), free_port()
    with log_file.open("wb") as log:
        env = environment(port, api_key)
        process = start_connector("sandbox", env, cpus, stdout=subprocess.PIPE, stderr=log)
        try:
            url = read_first_line(process, SANDBOX_READY_TIMEOUT_S)
            yield SandboxProcess(process, url, api_key, log_file)
        finally:
            stop_process(process)
            if process.stdout is not None:
                process.stdout.close()
