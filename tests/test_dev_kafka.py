"""The local Kafka broker: a real round trip, a restart that keeps data, its config, its errors."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from outgrow_braze_dev.kafka import (
    BOOTSTRAP_ENV,
    KAFKA_VERSION,
    BrokerUnavailable,
    ExternalBroker,
    JarBroker,
    _log_excerpt,
    docker_available,
    prepare_jars,
    render_server_properties,
    run_local_kafka,
    server_properties,
)

TWO_MIB = 2 * 1024 * 1024


async def create_topic(bootstrap: str) -> str:
    """Create a one-partition topic with a unique name (the broker does not auto-create)."""
    name = f"dev-kafka-{uuid.uuid4().hex[:10]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        response = await admin.create_topics([NewTopic(name, 1, 1)])
    finally:
        await admin.close()
    assert [(topic, code) for topic, code, *_ in response.topic_errors] == [(name, 0)]
    return name


@asynccontextmanager
async def producer_for(bootstrap: str) -> AsyncIterator[AIOKafkaProducer]:
    """Run a producer that accepts records of a few MiB."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", max_request_size=2 * TWO_MIB
    )
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()


async def read_values(bootstrap: str, topic: str, count: int) -> list[bytes | None]:
    """Read the first `count` values of partition 0 from the beginning."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=2 * TWO_MIB,
    )
    await consumer.start()
    values: list[bytes | None] = []
    try:
        consumer.assign([TopicPartition(topic, 0)])
        async with asyncio.timeout(30):
            while len(values) < count:
                values.append((await consumer.getone()).value)
    finally:
        await consumer.stop()
    return values


async def test_a_two_mib_record_round_trips_through_the_session_broker(
    bootstrap_servers: str,
) -> None:
    topic = await create_topic(bootstrap_servers)
    value = os.urandom(TWO_MIB)
    async with producer_for(bootstrap_servers) as producer:
        sent = await producer.send_and_wait(
            topic, value, key=b"respondent-1", headers=[("source", b"outgrow")]
        )
    assert sent.offset == 0
    assert await read_values(bootstrap_servers, topic, 1) == [value]


async def test_jar_broker_restarts_on_the_same_address_and_keeps_its_data() -> None:
    broker = JarBroker()
    await asyncio.to_thread(broker.start)
    try:
        address = broker.bootstrap_servers
        topic = await create_topic(address)
        async with producer_for(address) as producer:
            await producer.send_and_wait(topic, b"before the outage")
            await asyncio.to_thread(broker.stop)
            assert not broker.running
            await asyncio.to_thread(broker.start)
            # The producer lived through the outage and reconnects to the same address.
            await producer.send_and_wait(topic, b"after the outage")
        assert broker.bootstrap_servers == address
        assert await read_values(address, topic, 2) == [b"before the outage", b"after the outage"]
    finally:
        await asyncio.to_thread(broker.close)
    assert not broker.data_dir.exists()


def test_server_properties_describe_a_fast_single_node_kraft_broker(tmp_path: Path) -> None:
    text = render_server_properties(
        server_properties(broker_port=19092, controller_port=19093, log_dir=tmp_path / "kraft")
    )
    props = dict(line.split("=", 1) for line in text.splitlines())
    assert props["process.roles"] == "broker,controller"
    assert props["node.id"] == "1"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092"
    assert props["controller.listener.names"] == "CONTROLLER"
    assert props["listener.security.protocol.map"] == "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
    assert props["controller.quorum.bootstrap.servers"] == "127.0.0.1:19093"
    assert props["log.dirs"] == str(tmp_path / "kraft")
    for key in (
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "transaction.state.log.min.isr",
        "share.coordinator.state.topic.replication.factor",
        "share.coordinator.state.topic.min.isr",
        "num.partitions",
    ):
        assert props[key] == "1", key
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert props["auto.create.topics.enable"] == "false"
    assert int(props["message.max.bytes"]) >= TWO_MIB + 1024


def path_with_only(tmp_path: Path, *tools: str) -> str:
    """Return a PATH whose single directory holds links to just the named real tools."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in tools:
        real = shutil.which(tool)
        assert real is not None, f"{tool} must be installed for this test"
        (bin_dir / tool).symlink_to(real)
    return str(bin_dir)


def test_prepare_jars_names_maven_when_it_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", path_with_only(tmp_path, "java"))
    cache = tmp_path / "cache"
    with pytest.raises(BrokerUnavailable, match=rf"^Maven is needed .*{BOOTSTRAP_ENV}"):
        prepare_jars(cache_dir=cache)
    assert not cache.exists()


def test_prepare_jars_names_java_when_it_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", path_with_only(tmp_path))
    with pytest.raises(BrokerUnavailable, match=rf"^Java 17\+ is needed .*{BOOTSTRAP_ENV}"):
        prepare_jars(cache_dir=tmp_path / "cache")


def test_local_kafka_command_prints_the_sentence_and_fails_without_maven(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", path_with_only(tmp_path, "java"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert run_local_kafka(prepare_only=True) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("Maven is needed")


def test_local_kafka_prepare_only_reports_the_cached_jars(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run_local_kafka(prepare_only=True) == 0
    jars = prepare_jars()
    assert (jars / f"kafka_2.13-{KAFKA_VERSION}.jar").is_file()
    assert str(jars) in capsys.readouterr().err


def test_docker_available_says_no_quickly_when_the_engine_does_not_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Port 1 on loopback refuses connections: a configured engine that is not there.
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:1")
    started = time.monotonic()
    assert docker_available() is False
    assert time.monotonic() - started < 10


def test_external_broker_that_does_not_answer_is_reported_in_one_sentence() -> None:
    broker = ExternalBroker("127.0.0.1:1")
    assert broker.restartable is False
    with pytest.raises(BrokerUnavailable, match=rf"127\.0\.0\.1:1 .*{BOOTSTRAP_ENV}"):
        broker.start(timeout_s=1)


def test_a_failed_start_reports_the_buried_cause_and_the_last_lines(tmp_path: Path) -> None:
    log = tmp_path / "broker.log"
    shutdown = [
        f"[2026-01-01 00:00:{n:02},000] INFO shutting down part {n} (kafka)" for n in range(60)
    ]
    log.write_text(
        "[2026-01-01 00:00:00,000] INFO starting (kafka.Kafka$)\n"
        "[2026-01-01 00:00:01,000] ERROR Unable to start acceptor for PLAINTEXT (kafka.network)\n"
        "org.apache.kafka.common.KafkaException: Socket server failed to bind: Address in use.\n"
        "\tat org.apache.kafka.server.ServerSocketFactory.openServerSocket(Factory.java:56)\n"
        + "\n".join(shutdown)
        + "\n"
    )
    excerpt = _log_excerpt(log).splitlines()
    assert excerpt[:2] == [
        "[2026-01-01 00:00:01,000] ERROR Unable to start acceptor for PLAINTEXT (kafka.network)",
        "org.apache.kafka.common.KafkaException: Socket server failed to bind: Address in use.",
    ]
    assert excerpt[-1] == shutdown[-1]
    assert len(excerpt) <= 31
