"""The producer's partitioning matches Kafka's default, so keys land where other clients expect."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given
from hypothesis import strategies as st

from connector.producer import _partition_for


@given(st.binary(min_size=1, max_size=64), st.integers(1, 48))
def test_keyed_records_go_where_the_default_partitioner_sends_them(key: bytes, count: int) -> None:
    partitions = list(range(count))
    expected = DefaultPartitioner()(key, partitions, partitions)
    assert _partition_for(key, partitions, partitions) == expected
    assert _partition_for(key, partitions, partitions) == expected  # cached the second time


def test_unkeyed_records_go_to_an_available_partition() -> None:
    assert _partition_for(None, [0, 1, 2], [2]) == 2
    assert _partition_for(None, [0, 1, 2], []) in {0, 1, 2}
