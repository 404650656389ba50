"""The refusal the sandbox answers with."""

from __future__ import annotations

from outgrow_braze_dev.sandbox.errors import Refusal


def test_a_refusal_renders_braze_fatal_bodies() -> None:
    assert Refusal(403, "Access Denied").body() == {"message": "Access Denied"}
    errors = [{"type": "bad", "input_array": "events", "index": 0}]
    refusal = Refusal(400, "no data", errors)
    assert refusal.body() == {"message": "no data", "errors": errors}
    assert (refusal.status, str(refusal)) == (400, "no data")
