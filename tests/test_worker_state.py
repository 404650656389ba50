"""The delivery state against the real broker and the Braze sandbox: each submission once.

Records are keyed by their user's Braze identity, as the receiver writes them (issue 15), and
each event by its lead id (the shipped mapping's `lead_id_from`).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from connector.errors import ConfigError
from connector.worker import WorkerConfig, serve
from tests.worker_support import Pipeline, commit, lead, pipeline, wait_for

USERS = 1_000
SENTINEL = "untouched since round 0"


def submission(user: int, round_: int, score: int) -> dict[str, Any]:
    """A user's lead of a round: a new lead id and time, the answers given."""
    return {
        **lead(user, round_),
        "created_at": f"2026-11-{round_ + 1:02d}T10:20:30.000Z",
        "results": [
            {"title": "Score", "value": score},
            {"title": "Outcome", "value": f"segment-{user % 7}"},
        ],
    }


def events_received(line: Pipeline) -> int:
    return int(line.sandbox.state.stats.snapshot()["objects_processed"]["events"])


async def delivered(line: Pipeline, timeout_s: float = 120) -> None:
    """Wait until the group committed everything and the workers have nothing left."""
    await line.all_committed(timeout_s=timeout_s)


async def test_the_same_leads_posted_twice_send_each_event_once(bootstrap_servers: str) -> None:
    leads = [submission(u % 250, u // 250, u) for u in range(USERS)]  # 250 users, 4 leads each
    async with pipeline(bootstrap_servers, partitions=3) as line:
        await line.produce(leads, by_user=True)
        worker = line.start_observed_worker()
        await wait_for(lambda: events_received(line) > 0, 60)
        await line.produce(leads, by_user=True)  # a webhook retry storm, mid-delivery
        await delivered(line)
        assert events_received(line) == USERS
        for user in range(250):
            profile = line.profile(user)
            assert profile.events["outgrow_submission"].count == 4
            # The last record of the user, a copy of its round 3 lead, is what Braze has.
            assert profile.custom["outgrow_quiz_score"] == 750 + user
        counts = worker.pipeline.counts
        assert counts.events_skipped == USERS and counts.events_sent == USERS
        assert counts.unguarded == 0
        assert await line.dead_letters() == []


async def test_resubmissions_send_only_the_answers_that_changed(bootstrap_servers: str) -> None:
    async with pipeline(bootstrap_servers, partitions=3) as line:
        await line.produce([submission(u, 0, u) for u in range(USERS)], by_user=True)
        worker = line.start_observed_worker()
        await delivered(line)
        for user in range(USERS):  # mark what Braze has, to see what arrives again
            custom = line.profile(user).custom
            custom.update(dict.fromkeys(custom, SENTINEL))

        changed = set(range(0, USERS, 10))  # 10 % change their answers
        again = [submission(u, 1, u + 5_000 if u in changed else u) for u in range(USERS)]
        await line.produce(again, by_user=True)
        await delivered(line)

        for user in range(USERS):
            custom = line.profile(user).custom
            assert custom["outgrow_last_submitted_at"] == "2026-11-02T10:20:30.000Z"
            assert custom["outgrow_custom_segment"] == SENTINEL
            assert custom["outgrow_last_content"] == SENTINEL
            expected = user + 5_000 if user in changed else SENTINEL
            assert custom["outgrow_quiz_score"] == expected, user
        assert events_received(line) == 2 * USERS  # new leads: new events
        counts = worker.pipeline.counts
        # Round 1: the time of each, the score of 100 sent; 2 x 1,000 + 900 left out.
        assert counts.attributes_sent == 4 * USERS + USERS + len(changed)
        assert counts.attributes_skipped == 2 * USERS + USERS - len(changed)


async def test_a_new_worker_restores_the_state_and_sends_nothing_delivered(
    bootstrap_servers: str,
) -> None:
    leads = [submission(u, 0, u) for u in range(USERS)]
    async with pipeline(bootstrap_servers, partitions=3) as line:
        await line.produce(leads, by_user=True)
        first = line.start_observed_worker()
        await delivered(line)
        await first.halt()
        assert events_received(line) == USERS

        # Everything is read again (offsets lost, as after a crash before a commit); a new
        # worker, whose store starts empty, restores what Braze confirmed from the state topic.
        await commit(line, {p: 0 for p in range(3)})
        line.sandbox.state.stats.reset()
        second = line.start_observed_worker()
        await delivered(line)
        assert line.sandbox.state.stats.snapshot()["requests"] == {}
        counts = second.pipeline.counts
        assert counts.skipped == USERS and counts.delivered == 0
        assert counts.events_skipped == USERS


async def test_a_request_of_a_revoked_partition_is_not_sent_again(bootstrap_servers: str) -> None:
    """Braze answers 503 to everything while a second worker joins: the first worker's requests
    wait to be retried past its drain deadline, when it loses (and may get back anew) the
    partitions. Its retries then send nothing of them: the partitions' owners send each lead
    once, so Braze gets every event exactly once."""
    leads = [submission(u, 0, u) for u in range(100)]
    async with pipeline(bootstrap_servers, partitions=2) as line:
        line.sandbox.state.faults.configure({"outage_s": 600.0})
        await line.produce(leads, by_user=True)
        quick = {"worker_drain_timeout_s": 1, "worker_retry_max_backoff_s": 0.5}
        first = line.start_observed_worker(**quick)
        await wait_for(lambda: bool(line.sandbox.state.stats.snapshot()["requests"]), 60)
        second = line.start_observed_worker(**quick)
        # Once the second worker has partitions, the first one's revoke (and drain) is over.
        await wait_for(lambda: bool(second.pipeline and second.pipeline.consumer.assignment()))
        line.sandbox.state.faults.clear()
        await delivered(line)
        assert events_received(line) == len(leads)
        assert all(line.profile(u).events["outgrow_submission"].count == 1 for u in range(100))
        assert first.pipeline.counts.delivered + second.pipeline.counts.delivered == len(leads)


async def test_a_worker_without_its_state_topic_stops_with_a_configuration_error(
    bootstrap_servers: str,
) -> None:
    async with pipeline(bootstrap_servers) as line:
        await line.produce([lead(0, 0)], by_user=True)
        missing = f"no.such.state.{uuid.uuid4().hex[:8]}"
        topics = line.topics.topics.model_copy(update={"state_topic": missing})
        config = WorkerConfig(line.topics.kafka, topics, line.worker_settings())
        with pytest.raises(ConfigError, match="topics ensure"):
            await asyncio.wait_for(serve(config, asyncio.Event()), 60)
        assert line.profile(0) is None, "nothing is sent without the state"
