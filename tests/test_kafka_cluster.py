"""The local multi-node Kafka cluster: its settings; a node killed and restarted under writes."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from outgrow_braze_dev.kafka import JarBroker, Quorum, render_server_properties, server_properties
from outgrow_braze_dev.kafka_cluster import KafkaCluster, loopback_ports
from tests.kafka_support import read_all


def props(**settings: object) -> dict[str, str]:
    text = render_server_properties(server_properties(**settings))  # type: ignore[arg-type]
    return dict(line.split("=", 1) for line in text.splitlines())


def test_quorum_names_its_voters_and_keeps_one_node_spare() -> None:
    quorum = Quorum("cluster-id", (19093, 19094, 19095))
    assert quorum.voters == "1@127.0.0.1:19093,2@127.0.0.1:19094,3@127.0.0.1:19095"
    assert (quorum.size, quorum.replicas, quorum.min_insync) == (3, 3, 2)
    assert (Quorum("c", (1, 2)).replicas, Quorum("c", (1, 2)).min_insync) == (2, 1)
    assert Quorum("c", (1, 2, 3, 4, 5)).replicas == 3


def test_a_node_of_a_quorum_knows_its_voters_and_replicates_in_three(tmp_path: Path) -> None:
    quorum = Quorum("cluster-id", (19093, 19094, 19095))
    node = props(
        broker_port=19192, controller_port=19094, log_dir=tmp_path, node_id=2, quorum=quorum
    )
    assert node["node.id"] == "2"
    assert node["controller.quorum.voters"] == quorum.voters
    assert "controller.quorum.bootstrap.servers" not in node
    assert node["listeners"] == "PLAINTEXT://127.0.0.1:19192,CONTROLLER://127.0.0.1:19094"
    for key in ("default.replication.factor", "offsets.topic.replication.factor",
                "transaction.state.log.replication.factor"):  # fmt: skip
        assert node[key] == "3", key
    assert node["min.insync.replicas"] == node["transaction.state.log.min.isr"] == "2"


def test_a_broker_alone_keeps_its_single_node_settings(tmp_path: Path) -> None:
    alone = props(broker_port=19092, controller_port=19093, log_dir=tmp_path)
    assert alone["controller.quorum.bootstrap.servers"] == "127.0.0.1:19093"
    assert "controller.quorum.voters" not in alone
    assert alone["offsets.topic.replication.factor"] == alone["min.insync.replicas"] == "1"


def test_a_node_outside_its_quorum_is_refused() -> None:
    with pytest.raises(ValueError, match="not one of"):
        JarBroker(quorum=Quorum("c", (1, 2, 3)), node_id=4)


def test_loopback_ports_are_distinct() -> None:
    ports = loopback_ports(6)
    assert len(set(ports)) == 6


async def _replicated_topic(bootstrap: str) -> str:
    name = f"cluster-{uuid.uuid4().hex[:10]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        configs = {"min.insync.replicas": "2"}
        await admin.create_topics([NewTopic(name, 1, 3, topic_configs=configs)])
        assert len((await admin.describe_cluster())["brokers"]) == 3
    finally:
        await admin.close()
    return name


async def test_writes_go_on_while_one_node_is_killed_and_it_comes_back() -> None:
    cluster = KafkaCluster(3)
    await asyncio.to_thread(cluster.start)
    try:
        bootstrap = cluster.bootstrap_servers
        assert len(bootstrap.split(",")) == 3
        topic = await _replicated_topic(bootstrap)
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(topic, b"three nodes")
            await asyncio.to_thread(cluster.kill, 0)
            assert not cluster.running(0)
            await producer.send_and_wait(topic, b"two nodes")  # two in sync: acks=all holds
            await asyncio.to_thread(cluster.restart, 0)
            assert cluster.running(0)
            await producer.send_and_wait(topic, b"three again")
        finally:
            await producer.stop()
        values = [record.value for record in await read_all(bootstrap, topic)]
        assert values == [b"three nodes", b"two nodes", b"three again"]
    finally:
        await asyncio.to_thread(cluster.close)
    assert not any(node.data_dir.exists() for node in cluster.nodes)
