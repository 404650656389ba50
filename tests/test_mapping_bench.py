"""The mapping microbenchmark: bench leads as raw records, mapped as the worker maps them."""

from __future__ import annotations

import orjson
import pytest

from connector.intake import map_source
from connector.mapping import BrazeUpdate, load_mapping
from outgrow_braze_dev import mapping_bench


def test_records_map_to_updates_and_fresh_times_differ() -> None:
    mapping = load_mapping()
    for fresh in (False, True):
        batch = mapping_bench.records(3, fresh_times=fresh)
        assert all(isinstance(map_source(mapping, record), BrazeUpdate) for record in batch)
    times = {
        orjson.loads(r.value)["created_at"] for r in mapping_bench.records(3, fresh_times=True)
    }
    assert len(times) == 3


def test_the_bench_prints_cpu_per_record(capsys: pytest.CaptureFixture[str]) -> None:
    mapping_bench.main(["--events", "20", "--runs", "1", "--fresh-times"])
    assert "CPU µs/record" in capsys.readouterr().out
