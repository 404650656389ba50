"""`make run`: a local broker, the topics and the receiver with development credentials."""

from __future__ import annotations

import asyncio
import secrets
import sys

from connector.config import KafkaSettings, LogSettings, ReceiverSettings, TopicSettings, load
from connector.dev.kafka import BrokerUnavailable, provide_broker
from connector.errors import ConnectorError
from connector.logs import configure
from connector.receiver import ReceiverConfig, serve
from connector.topics import ensure_topics


def _banner(port: int, user: str, password: str, token: str) -> str:
    base = f"http://127.0.0.1:{port}"
    sample = '{"id":"lead-1","calc_name":"Demo quiz","user_info":{"email":"jane@example.com"},'
    sample += '"results":[{"title":"Score","value":72}]}'
    return "\n".join(
        [
            "",
            "outgrow-braze is running (development credentials, generated for this run):",
            f"  webhook URL (Basic auth): {base}/webhooks/outgrow",
            f"  Basic auth:               user {user}  password {password}",
            f"  webhook URL (token):      {base}/webhooks/outgrow?token={token}",
            f"  readiness:                {base}/readyz    metrics: {base}/metrics",
            "",
            "Try it:",
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
    receiver = load(
        ReceiverSettings,
        {
            "receiver_host": "127.0.0.1",
            "webhook_basic_auth": f"{user}:{password}",
            "webhook_tokens": token,
        },
    )
    await ensure_topics(kafka, topics)
    print(_banner(receiver.receiver_port, user, password, token), file=sys.stderr, flush=True)
    await serve(ReceiverConfig(kafka, topics, receiver))


def main() -> int:
    """Start everything `make run` promises and run until interrupted."""
    configure(load(LogSettings, {"log_format": "text"}))
    user, password, token = "outgrow", secrets.token_urlsafe(12), secrets.token_urlsafe(24)
    try:
        with provide_broker() as broker:
            print(f"KAFKA_BOOTSTRAP_SERVERS={broker.bootstrap_servers}", flush=True)
            asyncio.run(_serve(broker.bootstrap_servers, user, password, token))
    except (BrokerUnavailable, ConnectorError) as exc:
        print(f"make run: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
