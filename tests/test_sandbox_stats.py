"""The counters behind `GET /_sandbox/stats`."""

from __future__ import annotations

from outgrow_braze_dev.sandbox.contract import ObjectLimit, check_track
from outgrow_braze_dev.sandbox.stats import Stats


def test_stats_count_answers_objects_and_the_busiest_window() -> None:
    stats = Stats()
    for _ in range(3):
        stats.arrived("/users/track")
    stats.arrived("/users/export/ids")
    stats.answered("/users/track", 201)
    stats.answered("/users/track", 201)
    stats.answered("/users/track", "dropped")
    stats.answered("/users/export/ids", 429)
    body = {"attributes": [{"external_id": "u1"}, {"a": 1}], "events": [{"external_id": "u1"}]}
    stats.count_objects(check_track({"attributes": body["attributes"]}, ObjectLimit()))
    stats.count_rejected([{"input_array": "events", "index": 0, "type": "x"}])
    assert stats.snapshot() == {
        "requests": {
            "/users/track": {"201": 2, "dropped": 1},
            "/users/export/ids": {"429": 1},
        },
        "objects_processed": {"attributes": 1, "events": 0, "purchases": 0},
        "objects_rejected": {"attributes": 1, "events": 1, "purchases": 0},
        "max_track_requests_in_3s": 3,
    }
    stats.reset()
    assert stats.snapshot()["requests"] == {}
    assert stats.snapshot()["max_track_requests_in_3s"] == 0
