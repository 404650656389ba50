"""The producer's partitioning matches Kafka's default, so keys land where other clients expect.

`partition_of` is also what the worker checks a record's partition with, so it is compared with
Kafka's own Java partitioner (from the jars the local broker runs on), not only with aiokafka's.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from pathlib import Path

import pytest
from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given
from hypothesis import strategies as st

from connector.producer import _partition_for, partition_of
from outgrow_braze_dev.kafka import prepare_jars

# Prints, for each hex key read from standard input, the partition Kafka's producer gives it
# for each partition count named on the command line.
JAVA_SOURCE = """\
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.HexFormat;
import java.util.StringJoiner;
import org.apache.kafka.clients.producer.internals.BuiltInPartitioner;

public class KeyPartitions {
    public static void main(String[] args) throws Exception {
        BufferedReader in = new BufferedReader(
            new InputStreamReader(System.in, StandardCharsets.US_ASCII));
        String line;
        while ((line = in.readLine()) != null) {
            byte[] key = HexFormat.of().parseHex(line);
            StringJoiner out = new StringJoiner(" ");
            for (String count : args) {
                int partition = BuiltInPartitioner.partitionForKey(key, Integer.parseInt(count));
                out.add(Integer.toString(partition));
            }
            System.out.println(out);
        }
    }
}
"""
COUNTS = (1, 3, 12, 24, 97)


def known_keys() -> list[bytes]:
    """Keys as the receiver writes them, every length of murmur2's tail, and random bytes."""
    keys = [
        b"email:jane.doe@example.com",
        b"external_id:crm-000417",
        b"alias:partner:L1",
        b"phone:+15550100",
        b"lead:65f1c2a9e4b0a1b2c3d4e5f6",
        "email:zoë@exämple.com".encode(),
        b"\xff" * 1024,
    ]
    keys += [b"abcdefgh"[:n] for n in range(1, 9)]
    draw = random.Random(15)
    keys += [draw.randbytes(draw.randint(1, 80)) for _ in range(400)]
    return keys


def java_partitions(keys: list[bytes], tmp_path: Path) -> list[tuple[int, ...]]:
    java_home = os.environ.get("JAVA_HOME")
    java = str(Path(java_home, "bin", "java")) if java_home else shutil.which("java")
    if java is None:
        pytest.fail("Java is needed to compare with Kafka's partitioner (as for the local broker)")
    source = tmp_path / "KeyPartitions.java"
    source.write_text(JAVA_SOURCE, encoding="ascii")
    classpath = str(prepare_jars() / "*")
    result = subprocess.run(
        [java, "-cp", classpath, str(source), *map(str, COUNTS)],
        input="".join(key.hex() + "\n" for key in keys),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return [tuple(int(p) for p in line.split()) for line in result.stdout.splitlines()]


def test_partition_of_agrees_with_kafkas_java_partitioner(tmp_path: Path) -> None:
    keys = known_keys()
    expected = java_partitions(keys, tmp_path)
    assert len(expected) == len(keys)
    ours = [tuple(partition_of(key, count) for count in COUNTS) for key in keys]
    assert ours == expected
    assert len({row[-1] for row in expected}) > 50  # the keys spread: a real comparison


@given(st.binary(min_size=1, max_size=64), st.integers(1, 48))
def test_keyed_records_go_where_the_default_partitioner_sends_them(key: bytes, count: int) -> None:
    partitions = list(range(count))
    expected = DefaultPartitioner()(key, partitions, partitions)
    assert partition_of(key, count) == expected
    assert _partition_for(key, partitions, partitions) == expected
    assert _partition_for(key, partitions, partitions) == expected  # cached the second time


def test_unkeyed_records_go_to_an_available_partition() -> None:
    assert _partition_for(None, [0, 1, 2], [2]) == 2
    assert _partition_for(None, [0, 1, 2], []) in {0, 1, 2}
