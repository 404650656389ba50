"""Shared fixtures: a real Kafka broker for the session, and one that outage tests may restart."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from outgrow_braze_dev.kafka import Broker, JarBroker, provide_broker


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[Broker]:
    """Provide one broker for the whole session: KAFKA_BOOTSTRAP_SERVERS, Docker, or local jars."""
    with provide_broker() as broker:
        yield broker


@pytest.fixture(scope="session")
def bootstrap_servers(kafka_broker: Broker) -> str:
    """Return the session broker's bootstrap address."""
    return kafka_broker.bootstrap_servers


@pytest.fixture(scope="module")
def restartable_broker() -> Iterator[Broker]:
    """Provide a broker this module owns, so its tests may stop and restart it on the same port."""
    # Always from jars: the external cluster is not ours to stop, and a container comes back on
    # another port.
    with JarBroker() as broker:
        yield broker
