"""The worker benchmark's backlog: realistic leads, written the way the receiver writes them."""

from __future__ import annotations

from collections import Counter

import orjson
from aiokafka.partitioner import DefaultPartitioner

from connector.mapping import BrazeUpdate, load_mapping, map_record
from outgrow_braze_dev import backlog


def test_leads_are_deterministic_and_600_to_850_bytes() -> None:
    assert backlog.lead(42, 1_000) == backlog.lead(42, 1_000)
    sizes = [len(orjson.dumps(backlog.lead(n, 20_000))) for n in range(300)]
    assert min(sizes) >= 550 and max(sizes) <= 850
    assert 650 <= sum(sizes) / len(sizes) <= 750


def test_leads_spread_over_everyone_with_a_few_repeat_visitors() -> None:
    users = 2_000
    counts = Counter(backlog.user_of(n, users) for n in range(50_000))
    assert set(counts) == set(range(users))
    hot = sum(counts[u] for u in range(backlog.HOT_USERS))
    assert hot > 0.2 * 50_000  # every fifth lead, plus their share of the rest


def test_every_lead_maps_to_one_event_with_an_id_or_an_email() -> None:
    mapping = load_mapping()
    identities: Counter[str] = Counter()
    for n in range(300):
        _, value, _ = backlog.raw_record(n, 20_000)
        update = map_record(mapping, value, "application/json", source="default", received_at_ms=1)
        assert isinstance(update, BrazeUpdate)
        assert len(update.event_objects()) == 1
        assert update.attribute_object() is not None
        identities[next(iter(update.identity))] += 1
    assert set(identities) == {"external_id", "email"}


def test_records_carry_the_receivers_key_and_headers() -> None:
    mapping = load_mapping()
    for n in range(30):  # the user's identity, as the worker maps it: external id or e-mail
        key, value, _ = backlog.raw_record(n, 20_000)
        update = map_record(mapping, value, "application/json", source="default", received_at_ms=1)
        assert isinstance(update, BrazeUpdate)
        assert key == update.user_key.encode()
    key, value, headers = backlog.raw_record(2, 20_000)
    assert key == b"email:" + orjson.loads(value)["user_info"]["email"].encode()
    names = [name for name, _ in headers]
    assert names == ["content-type", "received-at", "source", "event-id"]
    found = dict(headers)
    assert found["content-type"] == b"application/json"
    assert found["received-at"].isdigit()
    assert len(found["event-id"]) == 32


def test_the_partitioner_is_the_producers_default() -> None:
    partition_of = backlog.Partitioner(12)
    default = DefaultPartitioner()
    for n in range(50):
        key, _, _ = backlog.raw_record(n, 20_000)
        assert partition_of(key) == default(key, list(range(12)), list(range(12)))
        assert partition_of(key) == partition_of(key)
