"""Status document: the master's records joined with scoreboard samples, as data and a table."""

from __future__ import annotations

import json
import os
import time
from typing import Any

import pytest

from aioworker.observe.scoreboard import READY, OldestRequest, Scoreboard
from aioworker.observe.status import build, format_bytes, format_duration, render, worker_state
from tests.helpers.observe import NOW, sample


def master(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "pid": 10,
        "stopping": False,
        "groups": [
            {
                "name": "web",
                "listen": "http://127.0.0.1:8000",
                "expected": 2,
                "ready": 2,
                "failing": False,
                "restarts": {"crash": 1},
                "last_exits": ["pid 7 slot 1: killed by SIGKILL, perhaps out of memory"],
                "workers": [
                    {"pid": 11, "slot": 0, "generation": 0, "state": "ready", "uptime": 100.0},
                    {"pid": 12, "slot": 1, "generation": 0, "state": "ready", "uptime": 50.0},
                ],
            },
            {
                "name": "task",
                "listen": "http://127.0.0.1:8001",
                "expected": 1,
                "ready": 1,
                "failing": False,
                "restarts": {},
                "last_exits": [],
                "workers": [
                    {"pid": 21, "slot": 0, "generation": 0, "state": "ready", "uptime": 30.0}
                ],
            },
        ],
    }
    doc.update(changes)
    return doc


SAMPLES = [
    sample(11, requests=1200, connections=3, status_classes=(0, 0, 1190, 0, 10, 0)),
    sample(12, slot=1, requests=800, in_progress=2, connections=2,
           oldest=OldestRequest("POST", "/echo", NOW - 0.25)),
    sample(21, group="task", requests=5, in_progress=1, heartbeat_mono=NOW - 12.34,
           oldest=OldestRequest("GET", "/task/sleep?seconds=60", NOW - 12.4)),
]  # fmt: skip
RSS = {11: 25 * 1024 * 1024, 12: 26 * 1024 * 1024, 21: 30 * 1024 * 1024}


def test_document() -> None:
    doc = build(master(), SAMPLES, NOW, RSS)
    json.dumps(doc)  # plain data all the way down
    web, task = doc["groups"]
    assert (web["state"], web["ready"], web["expected"], web["requests"]) == ("running", 2, 2, 2000)
    assert web["restarts"] == {"crash": 1}
    idle, busy = web["workers"]
    assert (idle["pid"], idle["state"], idle["requests"], idle["connections"]) == (
        11,
        "idle",
        1200,
        3,
    )
    assert idle["responses"] == {"2xx": 1190, "4xx": 10}
    assert idle["oldest_request"] is None
    assert idle["rss_bytes"] == 25 * 1024 * 1024
    assert (busy["state"], busy["in_progress"]) == ("busy", 2)
    assert busy["oldest_request"] == {"method": "POST", "path": "/echo", "age": 0.2}
    (blocked,) = task["workers"]
    assert (blocked["state"], blocked["blocked_for"]) == ("blocked", 12.3)
    assert blocked["oldest_request"]["path"] == "/task/sleep?seconds=60"
    assert blocked["oldest_request"]["age"] == 12.4
    assert doc["pid"] == 10
    # A group's requests add up across its workers.
    assert sum(w["requests"] for g in doc["groups"] for w in g["workers"]) == 2005


@pytest.mark.parametrize(
    ("changes", "lifecycle", "expected"),
    [
        pytest.param({}, "ready", ("idle", None), id="idle"),
        pytest.param({"in_progress": 1}, "ready", ("busy", None), id="busy"),
        pytest.param({"heartbeat_mono": NOW - 1.0}, "ready", ("blocked", 1.0), id="blocked"),
        pytest.param({"heartbeat_mono": NOW - 0.99}, "ready", ("idle", None), id="not-yet"),
        pytest.param({"heartbeat_mono": NOW - 3}, "draining", ("blocked", 3.0), id="blocked-wins"),
        pytest.param({"in_progress": 1}, "draining", ("draining", None), id="draining"),
        pytest.param({"heartbeat_mono": 0.0}, "starting", ("starting", None), id="starting"),
        pytest.param({"state": "starting"}, "ready", ("idle", None), id="master-knows-best"),
    ],
)
def test_worker_state(changes: dict[str, Any], lifecycle: str, expected: tuple[Any, ...]) -> None:
    assert worker_state(sample(1, **changes), lifecycle, NOW) == expected


def test_worker_without_slot_is_starting() -> None:
    assert worker_state(None, "starting", NOW) == ("starting", None)


@pytest.mark.parametrize(
    ("changes", "group_changes", "state"),
    [
        pytest.param({}, {}, "running", id="running"),
        pytest.param({"stopping": True}, {}, "stopping", id="stopping"),
        pytest.param({}, {"failing": True, "ready": 0}, "failing", id="failing"),
        pytest.param({}, {"ready": 1}, "degraded", id="degraded"),
        pytest.param({}, {"reloading": True}, "reloading", id="reloading"),
        pytest.param({}, {"expected": 0, "ready": 0}, "stopping", id="group-draining"),
        pytest.param({}, {"expected": 0, "ready": 0, "workers": []}, "stopped", id="group-stopped"),
    ],
)
def test_group_state(changes: dict[str, Any], group_changes: dict[str, Any], state: str) -> None:
    records = master(**changes)
    records["groups"][0].update(group_changes)
    assert build(records, SAMPLES, NOW, RSS)["groups"][0]["state"] == state


def test_rss_read_from_proc_by_default() -> None:
    records = master()
    records["groups"] = records["groups"][:1]
    records["groups"][0]["workers"] = [{"pid": os.getpid(), "slot": 0, "state": "ready"}]
    (worker,) = build(records, [], NOW)["groups"][0]["workers"]
    assert worker["rss_bytes"] > 1024 * 1024


def test_render_table() -> None:
    text = render(build(master(), SAMPLES, NOW, RSS), width=200)
    lines = text.splitlines()
    assert lines[0] == "master pid 10"
    web = next(line for line in lines if line.startswith("web "))
    assert "running" in web
    assert "http://127.0.0.1:8000" in web
    assert "2/2 ready" in web
    assert "restarts 1 (crash 1)" in web
    header = next(line for line in lines if "PID" in line)
    assert header.split() == ["PID", "SLOT", "STATE", "REQUESTS", "ACTIVE", "CONNS", "WS", "RSS",
                              "UPTIME", "OLDEST", "REQUEST"]  # fmt: skip
    blocked = next(line for line in lines if line.strip().startswith("21 "))
    assert "blocked 12.3s" in blocked
    assert "GET /task/sleep?seconds=60 (12.4s)" in blocked
    assert "30.0M" in blocked
    assert "last exit: pid 7 slot 1: killed by SIGKILL" in text
    # Columns line up: every row of a group starts its STATE cell at the same offset.
    first = lines.index(web) + 1
    rows = lines[first : first + 3]
    starts = {line.index(word) for line, word in zip(rows, ["STATE", "idle", "busy"], strict=True)}
    assert len(starts) == 1


@pytest.mark.parametrize(
    ("accepting", "shown"),
    [
        pytest.param(None, "", id="the-kernel-chooses"),
        pytest.param([0, 1], "", id="every-slot"),
        pytest.param([0], ", new connections to slot 0 only", id="one-steered-away"),
        pytest.param([], ", new connections to any slot (none free)", id="none-free"),
    ],
)
def test_steering_is_shown_on_the_group_line(accepting: list[int] | None, shown: str) -> None:
    doc = master()
    doc["groups"][0]["accepting"] = accepting
    text = render(build(doc, SAMPLES, NOW, RSS), width=200)
    web = next(line for line in text.splitlines() if line.startswith("web "))
    assert web.endswith("restarts 1 (crash 1)" + shown)


def test_steering_away_from_a_slot_without_a_worker_is_shown() -> None:
    doc = master()
    web = doc["groups"][0]
    web["workers"] = web["workers"][:1]  # slot 1's worker is gone (backing off after a crash)
    web["ready"] = 1
    web["accepting"] = [0]
    text = render(build(doc, SAMPLES, NOW, RSS), width=200)
    line = next(line for line in text.splitlines() if line.startswith("web "))
    assert line.endswith(", new connections to slot 0 only")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        pytest.param(None, "-", id="none"),
        pytest.param(0.44, "0.4s", id="sub-second"),
        pytest.param(59.9, "59.9s", id="seconds"),
        pytest.param(245, "4m05s", id="minutes"),
        pytest.param(3 * 3600 + 120, "3h02m", id="hours"),
        pytest.param(2 * 86400 + 4 * 3600, "2d04h", id="days"),
    ],
)
def test_format_duration(seconds: float | None, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        pytest.param(None, "-", id="none"),
        pytest.param(512, "512B", id="bytes"),
        pytest.param(25 * 1024 * 1024, "25.0M", id="mib"),
        pytest.param(3 * 1024**3, "3.0G", id="gib"),
    ],
)
def test_format_bytes(value: int | None, text: str) -> None:
    assert format_bytes(value) == text


def test_from_a_real_scoreboard() -> None:
    board = Scoreboard.create(4)
    index = board.claim(0, "web", 0)
    writer = board.writer(index)  # this process stands for the worker
    writer.update()
    writer.set_state(READY)
    records = master()
    records["groups"] = records["groups"][:1]
    records["groups"][0]["workers"] = [{"pid": os.getpid(), "slot": 0, "state": "ready"}]
    (worker,) = build(records, board.snapshot(), time.monotonic())["groups"][0]["workers"]
    assert worker["state"] == "idle"
    assert worker["pid"] == os.getpid()
    board.close()
