"""`aioworker nginx` with a queue-fed group: its routes are the default group's, no location."""

from __future__ import annotations

from pathlib import Path

from aioworker.config import load
from aioworker.frontdoor.nginx import render

ROOT = Path(__file__).resolve().parents[2]


def test_queued_routes_need_no_location_of_their_own() -> None:
    text = render(load(ROOT / "examples" / "queue.toml"))
    assert "location /report" not in text
    assert "aioworker_report" not in text
    assert "location / {\n        proxy_pass http://aioworker_web;" in text
