"""`make run`: the whole pipeline on one machine.

A local Kafka broker, the topics, the Braze sandbox, the receiver with development credentials
and a worker delivering to the sandbox; Ctrl-C stops everything in reverse order.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import sys

from connector import receiver, worker
from connector.config import (
    KafkaSettings,
    LogSettings,
    ReceiverSettings,
    TopicSettings,
    WorkerSettings,
    load,
)
from connector.errors import ConnectorError
from connector.logs import configure
from connector.mapping import load_mapping
from connector.signals import stop_on_signals
from connector.topics import ensure_topics
from outgrow_braze_dev.kafka import BrokerUnavailable, provide_broker
from outgrow_braze_dev.sandbox.app import Sandbox
from outgrow_braze_dev.sandbox.state import SandboxConfig
from outgrow_braze_dev.settings import SANDBOX_DEV_API_KEY, SandboxSettings


def _banner(port: int, user: str, password: str, token: str, sandbox_url: str) -> str:
    base = f"http://127.0.0.1:{port}"
    sample = (
        '{"id":"lead-1","calc_name":"Demo quiz","user_info":{"email":"jane@example.com"},'
        '"results":[{"title":"Score","value":72},{"title":"Outcome","value":"Growth Stage"}]}'
    )
    return "\n".join(
        [
            "",
            "outgrow-braze is running (development credentials, generated for this run):",
            f"  webhook URL (Basic auth): {base}/webhooks/outgrow",
            f"  Basic auth:               user {user}  password {password}",
            f"  webhook URL (token):      {base}/webhooks/outgrow?token={token}",
            f"  receiver probes:          {base}/readyz  {base}/metrics",
            f"  Braze sandbox:            {sandbox_url}/  (API key {SANDBOX_DEV_API_KEY})",
            "",
            "Try it, then open the sandbox page to see the profile:",
            f"  curl -i -u {user}:{password} -H 'Content-Type: application/json' \\",
            f"       -d '{sample}' {base}/webhooks/outgrow",
            "",
            "Ctrl-C stops everything.",
            "",
        ]
    )


async def _serve(bootstrap: str, user: str, password: str, token: str) -> None:
    kafka = load(KafkaSettings, {"kafka_bootstrap_servers": bootstrap})
    topics = load(TopicSettings)
    credentials = {"webhook_basic_auth": f"{user}:{password}", "webhook_tokens": token}
    receiver_settings = load(ReceiverSettings, {"receiver_host": "127.0.0.1", **credentials})
    await ensure_topics(kafka, topics)
    stop = stop_on_signals()
    async with Sandbox(SandboxConfig.from_settings(load(SandboxSettings))) as sandbox:
        worker_settings = load(
            WorkerSettings,
            {
                "braze_rest_endpoint": sandbox.base_url,
                "braze_api_key": SANDBOX_DEV_API_KEY,
                "worker_host": "127.0.0.1",
            },
        )
        port = receiver_settings.receiver_port
        print(_banner(port, user, password, token, sandbox.base_url), file=sys.stderr, flush=True)
        services = [
            receiver.serve(
                receiver.ReceiverConfig(
                    kafka, topics, receiver_settings, load_mapping(worker_settings.mapping_file)
                ),
                stop,
            ),
            worker.serve(worker.WorkerConfig(kafka, topics, worker_settings), stop),
        ]
        await asyncio.gather(*services)


def main() -> int:
    """Start everything `make run` promises and run until interrupted."""
    configure(load(LogSettings, {"log_format": "text"}))
    user, password, token = "outgrow", secrets.token_urlsafe(12), secrets.token_urlsafe(24)
    try:
        with provide_broker() as broker:
            print(f"KAFKA_BOOTSTRAP_SERVERS={broker.bootstrap_servers}", flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                asyncio.run(_serve(broker.bootstrap_servers, user, password, token))
    except (BrokerUnavailable, ConnectorError, OSError) as exc:
        print(f"make run: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
