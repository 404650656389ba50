"""A real multi-node Apache Kafka cluster (KRaft) on loopback, from the cached jars.

Every node is broker and controller (`JarBroker` given the cluster's `Quorum`), so a cluster of
three keeps a controller majority and two in-sync replicas while any one node is down: the fault
test (`outgrow-braze chaos`) kills one and starts it again on the same ports with the same data.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import socket
from pathlib import Path

from outgrow_braze_dev.kafka import KAFKA_VERSION, JarBroker, Quorum, StartedWith

DEFAULT_NODES = 3
# Three JVMs share two cores with the connector's processes: a smaller heap than a lone broker's.
CLUSTER_HEAP_MB = 384
START_TIMEOUT_S = 180.0


def loopback_ports(count: int) -> list[int]:
    """Return `count` distinct loopback ports that are free right now."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]


class KafkaCluster(StartedWith):
    """`nodes` brokers, each also a controller, started and stopped together; one at a time may
    be killed and started again."""

    restartable = True

    def __init__(
        self,
        nodes: int = DEFAULT_NODES,
        *,
        heap_mb: int = CLUSTER_HEAP_MB,
        version: str = KAFKA_VERSION,
    ) -> None:
        if nodes < 1:
            raise ValueError("a cluster has at least one node")
        ports = loopback_ports(2 * nodes)
        self.quorum = Quorum.on_ports(tuple(ports[nodes:]))
        self.nodes = [
            JarBroker(
                port=ports[index],
                heap_mb=heap_mb,
                version=version,
                quorum=self.quorum,
                node_id=index + 1,
            )
            for index in range(nodes)
        ]

    @property
    def bootstrap_servers(self) -> str:
        """Return every node's `127.0.0.1:PORT`, comma-separated."""
        return ",".join(node.bootstrap_servers for node in self.nodes)

    @property
    def log_paths(self) -> list[Path]:
        """Each node's log file, in node order."""
        return [node.log_path for node in self.nodes]

    def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Start every node at once and return when all answer: no node can answer before a
        majority of the controllers runs, so they cannot be started one after another."""
        with concurrent.futures.ThreadPoolExecutor(len(self.nodes), "kafka-node") as pool:
            starts = [pool.submit(node.start, timeout_s) for node in self.nodes]
            for start in starts:
                start.result()

    def kill(self, node: int) -> None:
        """SIGKILL node `node` (counted from 0)."""
        self.nodes[node].kill()

    def restart(self, node: int, timeout_s: float = START_TIMEOUT_S) -> None:
        """Start node `node` again, on its ports with its data, and wait until it answers."""
        self.nodes[node].start(timeout_s)

    def running(self, node: int) -> bool:
        """Tell whether node `node`'s JVM is alive."""
        return self.nodes[node].running

    def stop(self, timeout_s: float = 30) -> None:
        """Stop every node (controlled shutdowns, in parallel), keeping their data."""
        with concurrent.futures.ThreadPoolExecutor(len(self.nodes), "kafka-node") as pool:
            list(pool.map(lambda node: node.stop(timeout_s), self.nodes))

    def close(self) -> None:
        """End every node and delete the data directories."""
        # The data goes, so nothing needs a controlled shutdown, which could wait out its timeout
        # once the controllers it reports to have stopped first.
        for node in self.nodes:
            node.kill()
            node.close()
