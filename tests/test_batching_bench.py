"""The batching microbenchmark: mapped leads queued, packed and released as the worker does."""

from __future__ import annotations

import pytest

from connector.batching import Limits
from outgrow_braze_dev import batching_bench


def test_every_record_goes_in_some_request() -> None:
    batch = batching_bench.items(300, users=100)
    assert [(one.partition, one.offset) for one in batch] == [(0, n) for n in range(300)]
    # 100 people with 3 leads each, 4 objects a person: five requests of 75 objects (people's
    # first leads fill the room left), 28 more, then the rest of a person who filled some room
    assert batching_bench.pack_all(batch, 2, Limits()) == 7


def test_the_bench_prints_cpu_per_record(capsys: pytest.CaptureFixture[str]) -> None:
    batching_bench.main(["--events", "50", "--runs", "1", "--in-flight", "2"])
    assert "CPU µs/record" in capsys.readouterr().out
