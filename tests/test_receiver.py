"""The receiver against a real Kafka broker: what it publishes, what it refuses."""

from __future__ import annotations

import asyncio
import base64
import functools
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import RawTestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector.auth import Credentials
from connector.config import ReceiverSettings, load
from connector.errors import ConfigError
from connector.mapping import load_mapping
from connector.producer import Publisher, partition_of
from connector.receiver import ReceiverState, handle
from tests.kafka_support import Topics, end_offsets, fresh_topics, read_all

TOKEN = "t0ken-for-tests-0123456789"
BASIC = [("outgrow", "first-secret"), ("outgrow", "rotated-secret")]
PATH = "/webhooks/outgrow"


def basic(user: str, password: str) -> dict[str, str]:
    encoded = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {encoded}"}


AUTH = basic(*BASIC[0])


def lead(n: int, email: str | None = None) -> dict[str, Any]:
    """A lead shaped like Outgrow's public API model."""
    return {
        "id": f"lead-{n:06d}",
        "calc_id": "5892d26dcbff7e0b1c34bf65",
        "calc_name": "What's your marketing maturity?",
        "created_at": "2026-11-28T10:20:30.000Z",
        "user_info": {"fullName": f"User {n}", "email": email or f"User{n % 97}@Example.com"},
        "results": [{"title": "Score", "value": n % 100}],
    }


class Receiver:
    """A receiver app on a real HTTP port, publishing to fresh topics."""

    def __init__(
        self, server: RawTestServer, session: ClientSession, state: ReceiverState, t: Topics
    ):
        self.server = server
        self.session = session
        self.state = state
        self.topics = t

    def url(self, path: str = PATH) -> str:
        return str(self.server.make_url(path))

    async def post(
        self,
        body: bytes,
        content_type: str | None = "application/json",
        headers: Mapping[str, str] = AUTH,
        path: str = PATH,
    ) -> tuple[int, Any]:
        all_headers = dict(headers)
        if content_type is not None:
            all_headers["Content-Type"] = content_type
        async with self.session.post(self.url(path), data=body, headers=all_headers) as response:
            return response.status, await response.json(content_type=None)


@asynccontextmanager
async def running_receiver(
    bootstrap: str, topics: Topics | None = None, mapping_file: Path | None = None, **overrides: Any
) -> AsyncIterator[Receiver]:
    """Start a receiver with test credentials (over fresh topics unless given) and a mapping
    file (the shipped one unless given); stop it after."""
    topics = topics or await fresh_topics(bootstrap)
    settings = load(ReceiverSettings, {"receiver_publish_timeout_s": 5, **overrides})
    credentials = Credentials(
        basic=tuple(f"{u}:{p}".encode() for u, p in BASIC), tokens=(TOKEN.encode(),)
    )
    async with Publisher(topics.kafka, topics.raw, 2 * 1024 * 1024) as publisher:
        await publisher.wait_connected(30)
        state = ReceiverState(settings, credentials, load_mapping(mapping_file), publisher)
        server = RawTestServer(functools.partial(handle, state=state), host="127.0.0.1")
        await server.start_server()
        try:
            async with ClientSession() as session:
                yield Receiver(server, session, state, topics)
        finally:
            await server.close()


@pytest.fixture(scope="module")
async def receiver(bootstrap_servers: str) -> AsyncIterator[Receiver]:
    async with running_receiver(bootstrap_servers) as running:
        yield running


async def test_thousand_concurrent_posts_land_byte_identical(bootstrap_servers: str) -> None:
    async with running_receiver(bootstrap_servers) as rx:
        bodies = [orjson.dumps(lead(n)) + b" " * (n % 3) for n in range(1000)]
        answers = await asyncio.gather(*(rx.post(body) for body in bodies))
        assert [status for status, _ in answers] == [202] * 1000
        records = await read_all(bootstrap_servers, rx.topics.raw)

    assert len(records) == 1000, "nothing missing, nothing extra"
    by_event = {dict(r.headers)["event-id"].decode(): r for r in records}
    assert len(by_event) == 1000
    for body, (_, answer) in zip(bodies, answers, strict=True):
        record = by_event[answer["event_id"]]
        assert record.value == body
        assert (record.partition, record.offset) == (answer["partition"], answer["offset"])
        email = orjson.loads(body)["user_info"]["email"]
        assert record.key == b"email:" + email.strip().lower().encode()
        assert record.partition == partition_of(record.key, 3)  # fresh topics have 3
        headers = dict(record.headers)
        assert headers["content-type"] == b"application/json"
        assert headers["source"] == b"default"
        assert 1_700_000_000_000 < int(headers["received-at"]) < 2_000_000_000_000


async def test_one_user_stays_on_one_partition(receiver: Receiver) -> None:
    answers = [
        await receiver.post(orjson.dumps(lead(n, email="Same@Example.com"))) for n in range(5)
    ]
    assert {answer["partition"] for _, answer in answers} == {answers[0][1]["partition"]}
    offsets = [answer["offset"] for _, answer in answers]
    assert offsets == sorted(offsets)


BAD_INPUTS = [
    # (name, body, content type, headers, path, status, error code)
    ("no credentials", b"{}", "application/json", {}, PATH, 401, "unauthorized"),
    (
        "wrong password",
        b"{}",
        "application/json",
        basic("outgrow", "nope"),
        PATH,
        401,
        "unauthorized",
    ),
    (
        "wrong user",
        b"{}",
        "application/json",
        basic("other", "first-secret"),
        PATH,
        401,
        "unauthorized",
    ),
    (
        "garbled basic header",
        b"{}",
        "application/json",
        {"Authorization": "Basic %%%"},
        PATH,
        401,
        "unauthorized",
    ),
    (
        "bearer scheme",
        b"{}",
        "application/json",
        {"Authorization": f"Bearer {TOKEN}"},
        PATH,
        401,
        "unauthorized",
    ),
    (
        "wrong token",
        b"{}",
        "application/json",
        {},
        PATH + "?token=" + "x" * 26,
        401,
        "unauthorized",
    ),
    ("invalid json", b'{"email": ', "application/json", AUTH, PATH, 400, "invalid_json"),
    ("json array", b"[1, 2]", "application/json", AUTH, PATH, 400, "not_an_object"),
    ("json string", b'"lead"', "application/json", AUTH, PATH, 400, "not_an_object"),
    ("json null", b"null", "application/json", AUTH, PATH, 400, "not_an_object"),
    ("empty body", b"", "application/json", AUTH, PATH, 400, "empty_body"),
    ("blank body", b"  \n", "application/json", AUTH, PATH, 400, "empty_body"),
    ("invalid utf-8 json", b'{"a": "\xff"}', "application/json", AUTH, PATH, 400, "invalid_json"),
    (
        "invalid utf-8 form",
        b"email=\xff\xfe",
        "application/x-www-form-urlencoded",
        AUTH,
        PATH,
        400,
        "invalid_form",
    ),
    (
        "broken form",
        b"a=1&&=&b",
        "application/x-www-form-urlencoded",
        AUTH,
        PATH,
        400,
        "invalid_form",
    ),
    ("plain text", b"{}", "text/plain", AUTH, PATH, 415, "unsupported_media_type"),
    (
        "multipart",
        b"{}",
        "multipart/form-data; boundary=x",
        AUTH,
        PATH,
        415,
        "unsupported_media_type",
    ),
    ("no content type", b"{}", None, AUTH, PATH, 415, "unsupported_media_type"),
    ("bad source label", b"{}", "application/json", AUTH, PATH + "/-bad", 400, "invalid_source"),
    (
        "over the limit",
        b'{"a": "' + b"x" * (1024 * 1024) + b'"}',
        "application/json",
        AUTH,
        PATH,
        413,
        "payload_too_large",
    ),
    ("unknown path", b"{}", "application/json", AUTH, "/webhooks/other", 404, "not_found"),
]


@pytest.mark.parametrize(
    ("body", "content_type", "headers", "path", "status", "code"),
    [row[1:] for row in BAD_INPUTS],
    ids=[row[0] for row in BAD_INPUTS],
)
async def test_bad_input_is_refused_and_nothing_published(
    receiver: Receiver,
    body: bytes,
    content_type: str | None,
    headers: dict[str, str],
    path: str,
    status: int,
    code: str,
) -> None:
    before = await end_offsets(receiver.topics.kafka.kafka_bootstrap_servers, receiver.topics.raw)
    got_status, answer = await receiver.post(body, content_type, headers, path)
    assert (got_status, answer["error"]) == (status, code)
    assert answer["message"]
    after = await end_offsets(receiver.topics.kafka.kafka_bootstrap_servers, receiver.topics.raw)
    assert after == before
    async with receiver.session.get(receiver.url("/healthz")) as health:
        assert health.status == 200


async def test_unauthorized_answer_asks_for_basic_auth(receiver: Receiver) -> None:
    async with receiver.session.post(receiver.url(), data=b"{}") as response:
        assert response.status == 401
        assert response.headers["WWW-Authenticate"] == 'Basic realm="outgrow-braze"'


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
async def test_wrong_method_is_405_json(receiver: Receiver, method: str) -> None:
    async with receiver.session.request(method, receiver.url(), headers=AUTH) as response:
        assert response.status == 405
        assert (await response.json())["error"] == "method_not_allowed"
        assert "POST" in response.headers["Allow"]


async def test_chunked_body_over_the_limit_is_413(receiver: Receiver) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"a": "'
        for _ in range(17):
            yield b"x" * 65_536
        yield b'"}'

    headers = {**AUTH, "Content-Type": "application/json"}
    async with receiver.session.post(receiver.url(), data=chunks(), headers=headers) as response:
        assert response.status == 413
        assert (await response.json())["error"] == "payload_too_large"


async def test_body_of_exactly_the_limit_is_published_intact(receiver: Receiver) -> None:
    limit = receiver.state.settings.receiver_max_body_bytes
    prefix = b'{"id": "big", "padding": "'
    body = prefix + b"y" * (limit - len(prefix) - 2) + b'"}'
    assert len(body) == limit
    status, answer = await receiver.post(body)
    assert status == 202
    record = await _record_at(receiver, answer)
    assert record.value == body
    assert record.key == b"lead:big"


async def _record_at(receiver: Receiver, answer: Mapping[str, Any]) -> Any:
    records = await read_all(receiver.topics.kafka.kafka_bootstrap_servers, receiver.topics.raw)
    matches = [r for r in records if dict(r.headers)["event-id"].decode() == answer["event_id"]]
    assert len(matches) == 1
    return matches[0]


async def test_form_body_is_kept_raw_and_keyed_by_its_email(receiver: Receiver) -> None:
    body = b"user_info%5Bemail%5D=%20Form.User%40Example.com&score=72&name=A+B"
    status, answer = await receiver.post(
        body, "application/x-www-form-urlencoded; charset=UTF-8", path=PATH + "/quiz-1"
    )
    assert status == 202
    record = await _record_at(receiver, answer)
    assert record.value == body
    assert record.key == b"email:form.user@example.com"
    headers = dict(record.headers)
    assert headers["content-type"] == b"application/x-www-form-urlencoded; charset=UTF-8"
    assert headers["source"] == b"quiz-1"


async def test_token_and_rotated_password_are_both_accepted(receiver: Receiver) -> None:
    by_token = await receiver.post(b'{"id": "t"}', headers={}, path=f"{PATH}?token={TOKEN}")
    by_rotated = await receiver.post(b'{"id": "r"}', headers=basic(*BASIC[1]))
    assert (by_token[0], by_rotated[0]) == (202, 202)


async def test_lead_without_identity_falls_back_to_lead_id_then_no_key(receiver: Receiver) -> None:
    _, with_id = await receiver.post(b'{"id": 12345, "user_info": {"email": "  "}}')
    _, without = await receiver.post(b'{"note": "anonymous"}')
    records = await read_all(receiver.topics.kafka.kafka_bootstrap_servers, receiver.topics.raw)
    keys = {dict(r.headers)["event-id"].decode(): r.key for r in records}
    assert keys[with_id["event_id"]] == b"lead:12345"
    assert keys[without["event_id"]] is None


async def test_a_profile_chosen_by_source_keys_its_records_by_its_identity(
    bootstrap_servers: str, tmp_path: Path
) -> None:
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(
        "version: 1\nidentity:\n  - email: email\nprofiles:\n  - name: partner\n"
        "    when: {source: partner}\n    identity:\n      - alias: {label: p, from: ref}\n",
        encoding="utf-8",
    )
    async with running_receiver(bootstrap_servers, mapping_file=mapping) as rx:
        lead = b'{"email": "a@b.co", "ref": "R7"}'
        _, by_default = await rx.post(lead)
        _, by_partner = await rx.post(lead, path=PATH + "/partner")
        records = await read_all(bootstrap_servers, rx.topics.raw)
    keys = {dict(r.headers)["event-id"].decode(): r.key for r in records}
    assert keys[by_default["event_id"]] == b"email:a@b.co"
    assert keys[by_partner["event_id"]] == b"alias:p:R7"


async def test_overload_and_draining_shed_with_retry_after(receiver: Receiver) -> None:
    state = receiver.state
    state.in_flight = state.settings.receiver_max_in_flight
    try:
        async with receiver.session.post(receiver.url(), data=b"{}", headers=AUTH) as response:
            assert response.status == 503
            assert response.headers["Retry-After"] == "5"
            assert (await response.json())["error"] == "overloaded"
    finally:
        state.in_flight = 0
    state.draining = True
    try:
        status, answer = await receiver.post(b"{}")
        assert (status, answer["error"]) == (503, "draining")
        async with receiver.session.get(receiver.url("/readyz")) as ready:
            assert ready.status == 503
            assert (await ready.json())["reason"] == "draining"
    finally:
        state.draining = False


async def test_a_body_that_does_not_fit_the_byte_budget_is_shed(bootstrap_servers: str) -> None:
    budget = 4_096
    async with running_receiver(
        bootstrap_servers, receiver_max_body_bytes=2_048, receiver_max_in_flight_bytes=budget
    ) as rx:
        state = rx.state
        body = orjson.dumps(lead(1)).ljust(1_500)
        headers = {**AUTH, "Content-Type": "application/json"}
        state.in_flight_bytes = budget - 1_000  # as if other posts held that much
        try:
            # By its Content-Length before it is read, and without one as it is read.
            for data in (body, _chunks(body, 500)):
                async with rx.session.post(rx.url(), data=data, headers=headers) as answer:
                    assert answer.status == 503
                    assert answer.headers["Retry-After"] == "5"
                    assert (await answer.json())["error"] == "overloaded"
            assert state.in_flight_bytes == budget - 1_000, "a refused post keeps nothing"
        finally:
            state.in_flight_bytes = 0
        for data in (body, _chunks(body, 500)):
            async with rx.session.post(rx.url(), data=data, headers=headers) as answer:
                assert answer.status == 202, await answer.text()
        assert state.in_flight_bytes == 0, "an answered post gives its bytes back"
        async with rx.session.get(rx.url("/metrics")) as metrics:
            assert "outgrow_receiver_in_flight_bytes 0.0" in await metrics.text()


async def _chunks(body: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


def test_the_byte_budget_holds_at_least_one_whole_body() -> None:
    with pytest.raises(ConfigError, match="RECEIVER_MAX_IN_FLIGHT_BYTES must be at least"):
        load(
            ReceiverSettings,
            {"receiver_max_body_bytes": 2_048, "receiver_max_in_flight_bytes": 1_024},
        )


async def test_metrics_report_readiness_without_a_probe(bootstrap_servers: str) -> None:
    async with running_receiver(bootstrap_servers) as rx:
        async with rx.session.get(rx.url("/metrics")) as response:
            text = await response.text()
    assert "outgrow_receiver_ready 1.0" in text


async def test_readiness_and_metrics(receiver: Receiver) -> None:
    async with receiver.session.get(receiver.url("/readyz")) as ready:
        assert (ready.status, await ready.json()) == (200, {"status": "ready"})
    await receiver.post(b'{"id": "m"}')
    async with receiver.session.get(receiver.url("/metrics")) as response:
        text = await response.text()
    assert 'outgrow_receiver_requests_total{error="",status="202"}' in text
    assert "outgrow_receiver_publish_seconds_bucket" in text
    assert "outgrow_receiver_body_bytes_count" in text
    assert "outgrow_receiver_in_flight 0.0" in text
    assert TOKEN not in text and "first-secret" not in text


async def test_readiness_is_false_when_the_raw_topic_is_missing(bootstrap_servers: str) -> None:
    async with running_receiver(bootstrap_servers) as rx:
        await asyncio.sleep(1.1)  # let the cached readiness answer expire
        rx.state.publisher._topic = "no.such.topic"
        async with rx.session.get(rx.url("/readyz")) as ready:
            assert ready.status == 503
            assert "no.such.topic" in (await ready.json())["reason"]


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    body=st.binary(max_size=300),
    content_type=st.sampled_from(
        ["application/json", "application/x-www-form-urlencoded", "text/plain"]
    ),
)
async def test_no_input_gets_a_server_error(
    receiver: Receiver, body: bytes, content_type: str
) -> None:
    status, answer = await receiver.post(body, content_type)
    assert status in {202, 400, 415}
    assert ("error" in answer) == (status != 202)


def test_event_ids_are_unique_version_4_uuids() -> None:
    import uuid

    from connector.receiver import new_event_id

    ids = [new_event_id() for _ in range(3000)]  # crosses the buffer refill
    assert len(set(ids)) == 3000
    assert all(uuid.UUID(i).version == 4 for i in ids)
