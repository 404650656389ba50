"""The page at `GET /`: profiles, attributes and recent events, escaped."""

from __future__ import annotations

from datetime import UTC, datetime

from connector.config import load
from outgrow_braze_dev.sandbox import page
from outgrow_braze_dev.sandbox.app import running
from outgrow_braze_dev.sandbox.client import SandboxClient
from outgrow_braze_dev.sandbox.contract import ObjectLimit, check_track
from outgrow_braze_dev.sandbox.store import ProfileStore
from outgrow_braze_dev.settings import SANDBOX_DEV_API_KEY, SandboxSettings


def test_an_empty_sandbox_says_how_to_fill_it() -> None:
    html = page.render([], 0)
    assert "No profile yet" in html
    assert 'http-equiv="refresh"' in html


def test_profiles_show_identifiers_attributes_and_events_escaped() -> None:
    store = ProfileStore(clock=lambda: datetime(2026, 1, 1, tzinfo=UTC))
    body = {
        "attributes": [
            {"external_id": "<u1>", "first_name": "Ann", "quiz": {"score": 72}},
            {"user_alias": {"alias_name": "n", "alias_label": "l"}, "_update_existing_only": False},
            {"email": "e@x.io", "a": 1},
        ],
        "events": [
            {
                "external_id": "<u1>",
                "name": "<script>",
                "time": "2026-01-01",
                "properties": {"a": "&"},
            }
        ],
    }
    store.apply(check_track(body, ObjectLimit()))
    html = page.render(store.recently_updated(10), len(store))
    assert "<script>" not in html
    assert "&lt;script&gt;" in html
    assert "external_id &lt;u1&gt;" in html
    assert "alias l: n" in html and "e@x.io" in html
    assert "{&quot;score&quot;:72}" in html
    assert "2026-01-01T00:00:00.000Z" in html
    assert "3 profiles" in html


async def test_the_page_is_served_at_the_root() -> None:
    settings = load(SandboxSettings, {"sandbox_port": 0, "sandbox_api_key": SANDBOX_DEV_API_KEY})
    async with running(settings) as url, SandboxClient(url) as braze:
        body = {"events": [{"external_id": "jane", "name": "quiz_done", "time": "2026-01-01"}]}
        await braze.track(body)
        async with braze.session.get(url + "/") as response:
            assert response.status == 200
            assert response.content_type == "text/html"
            html = await response.text()
    assert "external_id jane" in html and "quiz_done" in html
