"""The fault test's steady stream of leads, posted to the receiver as Outgrow's webhooks would.

Lead `n` is posted at `n / rate` seconds and, like a webhook, posted again until the receiver
acknowledges it (a 2xx) or `give_up_s` has passed: a refused post (503 while Kafka is short of
replicas, a connection refused while the receiver is down) is retried half a second later. Only
leads with a 2xx are acknowledged; those are the ones that must reach Braze.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field

import aiohttp
import orjson

from outgrow_braze_dev.backlog import lead
from outgrow_braze_dev.loadgen import check_loopback

RETRY_PAUSE_S = 0.5
POST_TIMEOUT_S = 10.0
GIVE_UP_S = 60.0
MAX_CONCURRENT_POSTS = 64


@dataclass
class Posted:
    """What the receiver answered: the acknowledged lead ids and every refusal, by kind."""

    acknowledged: set[str] = field(default_factory=set)
    abandoned: set[str] = field(default_factory=set)
    posts: int = 0
    refusals: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True)
class LeadStream:
    """Where and how fast leads are posted."""

    url: str
    user: str
    password: str
    leads: int
    users: int
    rate_per_s: float
    give_up_s: float = GIVE_UP_S

    def __post_init__(self) -> None:
        check_loopback(self.url)  # raises NotLoopback: the stream only ever targets this machine

    async def post_all(self) -> Posted:
        """Post every lead on its schedule; return once each was acknowledged or given up."""
        posted = Posted()
        timeout = aiohttp.ClientTimeout(total=POST_TIMEOUT_S)
        headers = {
            "Authorization": aiohttp.encode_basic_auth(self.user, self.password),
            "Content-Type": "application/json",
        }
        limit = asyncio.Semaphore(MAX_CONCURRENT_POSTS)
        async with aiohttp.ClientSession(timeout=timeout, headers=headers) as session:
            start = time.monotonic()
            async with asyncio.TaskGroup() as group:
                for index in range(self.leads):
                    await _sleep_until(start + index / self.rate_per_s)
                    group.create_task(self._deliver(session, limit, index, posted))
        return posted

    async def _deliver(
        self, session: aiohttp.ClientSession, limit: asyncio.Semaphore, index: int, posted: Posted
    ) -> None:
        """Post one lead until it is acknowledged or `give_up_s` has passed."""
        document = lead(index, self.users)
        body, lead_id = orjson.dumps(document), str(document["id"])
        deadline = time.monotonic() + self.give_up_s
        while time.monotonic() < deadline:
            async with limit:
                refusal = await self._post(session, body)
            posted.posts += 1
            if refusal is None:
                posted.acknowledged.add(lead_id)
                return
            posted.refusals[refusal] += 1
            await asyncio.sleep(RETRY_PAUSE_S)
        posted.abandoned.add(lead_id)

    async def _post(self, session: aiohttp.ClientSession, body: bytes) -> str | None:
        """Post once: None when acknowledged, else the status or the error's kind."""
        try:
            async with session.post(self.url, data=body) as answer:
                await answer.read()
                return None if 200 <= answer.status < 300 else str(answer.status)
        except (aiohttp.ClientError, TimeoutError) as exc:
            return type(exc).__name__


async def _sleep_until(moment: float) -> None:
    delay = moment - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)
