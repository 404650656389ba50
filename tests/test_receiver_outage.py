"""Kafka goes away while the receiver runs: no post gets a 2xx, and it recovers by itself."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from tests.kafka_support import read_all
from tests.test_receiver import running_receiver


async def _post_until_accepted(rx: Any, body: bytes, timeout_s: float) -> list[int]:
    """Post every half second until one is accepted; return every status seen."""
    seen: list[int] = []
    async with asyncio.timeout(timeout_s):
        while not seen or seen[-1] != 202:
            seen.append((await rx.post(body))[0])
            if seen[-1] != 202:
                await asyncio.sleep(0.5)
    return seen


async def test_posts_get_503_while_kafka_is_down_then_succeed(restartable_broker: Any) -> None:
    bootstrap = restartable_broker.bootstrap_servers
    async with running_receiver(bootstrap, receiver_publish_timeout_s=2) as rx:
        assert (await rx.post(b'{"id": "before"}'))[0] == 202

        await asyncio.to_thread(restartable_broker.stop)
        during = await asyncio.gather(
            *(rx.post(orjson.dumps({"id": f"during-{n}"})) for n in range(10))
        )
        statuses = [status for status, _ in during]
        assert statuses == [503] * 10, statuses
        assert all(answer["error"] == "kafka_unavailable" for _, answer in during)
        await asyncio.sleep(1.1)  # past the cached readiness answer
        async with rx.session.get(rx.url("/readyz")) as ready:
            assert ready.status == 503

        await asyncio.to_thread(restartable_broker.start)
        seen = await _post_until_accepted(rx, b'{"id": "after"}', timeout_s=90)
        assert set(seen) <= {202, 503}
        assert (await rx.post(b'{"id": "after-2"}'))[0] == 202

    records = await read_all(bootstrap, rx.topics.raw)
    ids = [orjson.loads(r.value)["id"] for r in records]
    # Posts answered 503 may still reach Kafka once it is back (at least once, never lost).
    assert {"before", "after", "after-2"} <= set(ids)
