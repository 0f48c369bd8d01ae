"""End to end: a real master with the Observability hook, real workers, real requests.

A worker blocked in time.sleep inside the app shows as blocked with the request's path; past
its group's timeout the log holds the app function's name and a new pid serves the slot.
Counters add up across status and /metrics. /readyz is 503 while a group is down.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from aioworker.supervisor.control import ControlError, NoMaster, request
from tests.helpers.client import RawConn
from tests.helpers.master import PYTHON, ROOT, MasterProcess, get, spawn_python
from tests.helpers.wait import wait_until

T = TypeVar("T")

pytestmark = pytest.mark.slow

CONFIG = """
[server]
graceful_timeout = 2.0
keepalive_timeout = 1.0

[groups.web]
app = "tests.apps.observed:app"
listen = "http://127.0.0.1:0"
count = 2

[groups.task]
app = "tests.apps.observed:app"
listen = "http://127.0.0.1:0"
count = 1
timeout = 2.5
soft_timeout = 0.5
max_rss_mb = 80

[metrics]
listen = "http://127.0.0.1:0"
"""

RUN = (
    "import sys; from aioworker import run; from aioworker.observe.hook import Observability; "
    "sys.exit(run('config.toml', hooks=[{hooks}]))"
)


@contextmanager
def observed_master(directory: Path, hooks: str, config: str = CONFIG) -> Iterator[MasterProcess]:
    (directory / "config.toml").write_text(config)
    m = spawn_python(["-c", RUN.format(hooks=hooks)], directory)
    try:
        m.wait_started()
        m.ports["metrics"] = int(m.wait_for(r"metrics on http://127.0.0.1:(\d+)").group(1))
        yield m
    finally:
        m.stop()


@pytest.fixture
def master(tmp_path: Path) -> Iterator[MasterProcess]:
    with observed_master(tmp_path, "Observability(rss_interval=0.2)") as m:
        yield m


def status(m: MasterProcess) -> dict[str, Any]:
    return request(m.directory / "aioworker.sock", "status")


def group(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return next(g for g in doc["groups"] if g["name"] == name)


def until(predicate: Callable[[], T | None]) -> T:
    """Ask the master again until `predicate` returns something true (each ask is an event)."""
    return wait_until(predicate, 15.0, interval=0.05)


def metrics(m: MasterProcess) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    text = httpx.get(f"http://127.0.0.1:{m.ports['metrics']}/metrics").text
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def test_counters_add_up(master: MasterProcess) -> None:
    sent = 40
    for _ in range(sent - 1):
        assert get(master.url("web"))[0] == 200
    assert get(master.url("web"), "/nap")[0] == 200

    def web_total() -> int:
        return sum(w["requests"] for w in group(status(master), "web")["workers"])

    until(lambda: web_total() >= sent)
    doc = status(master)
    web = group(doc, "web")
    assert web_total() == sent
    assert (web["state"], web["ready"], web["expected"]) == ("running", 2, 2)
    assert all(w["responses"].get("2xx", 0) == w["requests"] for w in web["workers"])
    m = metrics(master)
    web_series = {k: v for k, v in m["aioworker_requests_total"].items() if ("group", "web") in k}
    assert sum(web_series.values()) == sent
    counts = m["aioworker_request_duration_seconds_count"]
    assert sum(v for k, v in counts.items() if ("group", "web") in k) == sent
    # The histogram's _sum is the time spent: the 0.3 s nap plus 39 quick answers.
    seconds = m["aioworker_request_duration_seconds_sum"]
    assert 0.3 <= sum(v for k, v in seconds.items() if ("group", "web") in k) < 2.0
    assert httpx.get(f"http://127.0.0.1:{master.ports['metrics']}/healthz").status_code == 200
    assert httpx.get(f"http://127.0.0.1:{master.ports['metrics']}/readyz").status_code == 200


def test_blocked_worker_seen_dumped_killed_replaced(master: MasterProcess) -> None:
    since = master.mark()
    client = threading.Thread(target=_expect_failure, args=(master.url("task"),), daemon=True)
    client.start()
    pid = int(master.wait_for(r"BLOCKING pid=(\d+)", since).group(1))

    def blocked() -> dict[str, Any] | None:
        (worker,) = [w for w in group(status(master), "task")["workers"] if w["pid"] == pid]
        return worker if worker["state"] == "blocked" and worker["oldest_request"] else None

    worker = until(blocked)
    assert worker["oldest_request"]["method"] == "GET"
    assert worker["oldest_request"]["path"] == "/task/report"  # the engine keeps no query
    assert worker["blocked_for"] >= 1.0
    # What people see: the CLI's table, asked over the control socket.
    shown = subprocess.run(
        [PYTHON, "-m", "aioworker", "status", "-c", "config.toml"],
        cwd=master.directory,
        env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert shown.returncode == 0, shown.stderr
    (row,) = [line for line in shown.stdout.splitlines() if line.startswith(f"  {pid} ")]
    assert re.search(r" blocked \d+\.\ds .* GET /task/report \(\d+\.\ds\)$", row), row
    # The other group is untouched.
    assert get(master.url("web"))[0] == 200

    soft = master.wait_for(rf"worker {pid} \(task\[0\]\) event loop blocked .*soft_timeout", since)
    assert "serving GET /task/report;" in soft.string
    master.wait_for(r"in generate_quarterly_report_blocking", since)
    kill = master.wait_for(rf"worker {pid} \(task\[0\]\) killed, event loop blocked", since)
    assert kill.string.endswith("serving GET /task/report")
    new_pid = int(master.wait_for(r"ready group=task slot=0 pid=(\d+)", since).group(1))
    assert new_pid != pid
    # The stack was written twice (soft, then before the kill), each with the app function.
    assert len(master.all_matches(r"in generate_quarterly_report_blocking", since)) >= 2
    client.join(10)

    doc = status(master)
    task = group(doc, "task")
    assert task["restarts"] == {"timeout": 1}
    assert [w["pid"] for w in task["workers"]] == [new_pid]
    assert any("blocked for" in line for line in task["last_exits"])
    m = metrics(master)
    assert m["aioworker_worker_restarts_total"][(("group", "task"), ("reason", "timeout"))] == 1


def _expect_failure(address: tuple[str, int]) -> None:
    try:
        get(address, "/task/report?q=2", timeout=20)
    except (ConnectionError, OSError):
        pass  # the worker serving it was killed: that request is lost, by design


def test_readyz_follows_a_group_down_and_back(master: MasterProcess) -> None:
    base = f"http://127.0.0.1:{master.ports['metrics']}"
    assert httpx.get(base + "/readyz").status_code == 200
    hold = master.directory / "HOLD"
    hold.write_text("")  # the replacement will wait in its startup
    (worker,) = group(status(master), "task")["workers"]
    os.kill(worker["pid"], 9)

    def down() -> httpx.Response | None:
        response = httpx.get(base + "/readyz")
        return response if response.status_code == 503 else None

    response = until(down)
    assert "task 0/1" in response.text
    assert httpx.get(base + "/healthz").status_code == 200
    assert get(master.url("web"))[0] == 200
    hold.unlink()
    until(lambda: httpx.get(base + "/readyz").status_code == 200)
    assert group(status(master), "task")["ready"] == 1


def test_memory_recycled_gracefully(master: MasterProcess) -> None:
    (old,) = group(status(master), "task")["workers"]
    since = master.mark()
    assert get(master.url("task"), "/task/grow")[0] == 200
    master.wait_for(
        rf"worker {old['pid']} \(task\[0\]\) recycled, uses \d+ MiB, above max_rss_mb 80", since
    )
    new_pid = int(master.wait_for(r"ready group=task slot=0 pid=(\d+)", since).group(1))
    exited = master.wait_for(rf"exited pid={old['pid']} ", since)
    lines = master.lines[since:]
    # Replacement ready first, then the old one drained and exited (no unplanned death).
    ready_at = next(i for i, line in enumerate(lines) if f"pid={new_pid} generation" in line)
    assert ready_at < lines.index(exited.string)
    assert not master.all_matches(r"worker died", since)
    task = group(status(master), "task")
    assert task["restarts"] == {"memory": 1}
    assert [w["pid"] for w in task["workers"]] == [new_pid]
    assert task["workers"][0]["rss_bytes"] < 80 * 1024 * 1024


def test_memory_limit_of_a_worker_already_leaving_is_not_a_restart(tmp_path: Path) -> None:
    """max_requests recycles the worker first; its memory is then no second reason."""
    config = CONFIG.replace("max_rss_mb = 80", "max_rss_mb = 80\nmax_requests = 1")
    # 8 samples (1.6 s) over the limit: long after the worker asks to be recycled (0.5 s).
    hooks = "Observability(rss_interval=0.2, rss_samples=8)"
    with observed_master(tmp_path, hooks, config) as m:
        (old,) = group(status(m), "task")["workers"]
        hold = m.directory / "HOLD"
        hold.write_text("")  # the replacement waits in its startup: the old one stays ready
        since = m.mark()
        assert get(m.url("task"), "/task/grow")[0] == 200
        m.wait_for(rf"recycling pid={old['pid']} group=task slot=0: max_requests", since)
        m.wait_for(
            rf"worker {old['pid']} \(task\[0\]\) uses \d+ MiB, above max_rss_mb 80 for 8 "
            r"samples; already being replaced \(max_requests\)",
            since,
        )
        hold.unlink()
        m.wait_for(rf"exited pid={old['pid']} ", since)
        assert group(status(m), "task")["restarts"] == {}
        assert not m.all_matches(r"recycled, uses", since)


def test_control_reload_one_group_then_stop(master: MasterProcess) -> None:
    sock = master.directory / "aioworker.sock"
    web_before = {w["pid"] for w in group(status(master), "web")["workers"]}
    (task_before,) = group(status(master), "task")["workers"]
    since = master.mark()
    with pytest.raises(ControlError, match="no group named nope"):
        request(sock, "reload", groups=["nope"])
    assert request(sock, "reload", groups=["task"])["groups"] == ["task"]
    new_pid = int(
        master.wait_for(r"ready group=task slot=0 pid=(\d+) generation=1", since).group(1)
    )
    master.wait_for(rf"exited pid={task_before['pid']} ", since)
    assert new_pid != task_before["pid"]
    assert {w["pid"] for w in group(status(master), "web")["workers"]} == web_before
    reply = request(sock, "stop")
    assert (reply["stopping"], reply["fast"]) == (True, False)
    assert master.wait(20) == 0
    assert not sock.exists()
    with pytest.raises(NoMaster):
        request(sock, "status")


def test_control_stops_and_starts_one_group(master: MasterProcess) -> None:
    sock = master.directory / "aioworker.sock"
    ready = f"http://127.0.0.1:{master.ports['metrics']}/readyz"
    (task_before,) = group(status(master), "task")["workers"]
    since = master.mark()
    with pytest.raises(ControlError, match="no group named nope"):
        request(sock, "stop", groups=["task", "nope"])
    with pytest.raises(ControlError, match='start needs "groups"'):
        request(sock, "start")
    assert request(sock, "stop", groups=["task"]) == {"ok": True, "groups": ["task"]}
    master.wait_for(rf"exited pid={task_before['pid']} ", since)
    task = until(lambda: (g := group(status(master), "task"))["state"] == "stopped" and g)
    assert (task["workers"], task["expected"], task["restarts"]) == ([], 0, {})
    # The master and the other group go on; a group stopped on purpose is not "unready".
    assert get(master.url("web"))[0] == 200
    assert httpx.get(ready).status_code == 200
    # The listener stays open: a request sent now waits in the queue for the group.
    with RawConn.connect(master.url("task"), timeout=10) as waiting:
        waiting.send(b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        assert request(sock, "start", groups=["task"])["groups"] == ["task"]
        new_pid = int(master.wait_for(r"ready group=task slot=0 pid=(\d+)", since).group(1))
        answer = waiting.read_response(timeout=10)
    assert (answer.version, answer.status) == ("1.1", 200)
    assert answer.body == str(new_pid).encode()
    assert group(status(master), "task")["state"] == "running"


def test_taken_metrics_port_fails_the_start(tmp_path: Path) -> None:
    """Like a group's port: a master asked for metrics does not run without them."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        metrics = f'[metrics]\nlisten = "http://127.0.0.1:{port}"\n'
        (tmp_path / "config.toml").write_text(CONFIG.split("[metrics]")[0] + metrics)
        done = subprocess.run(
            [PYTHON, "-m", "aioworker", "start", "-c", "config.toml"],
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert done.returncode == 1, done.stderr
    assert f"cannot start: http://127.0.0.1:{port}: address already in use" in done.stderr
    assert "spawned" not in done.stderr
    assert not (tmp_path / "aioworker.sock").exists()  # the control socket was taken down


def test_two_observability_hooks_act_once(tmp_path: Path) -> None:
    """A default hook plus one passed to run(): the last one given serves, the other is inert."""
    with observed_master(tmp_path, "Observability(), Observability()") as m:
        assert len(m.all_matches(r"metrics on http://")) == 1
        assert not m.all_matches(r"hook .* failed")
        assert get(m.url("web"))[0] == 200
        until(lambda: group(status(m), "web")["requests"] == 1)
