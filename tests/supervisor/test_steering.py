"""New connections go to workers that can serve them: a blocked worker's slot is steered away
from until its loop turns again (real master, real workers, real connections)."""

from __future__ import annotations

import json
import threading

import httpx
import pytest

from aioworker.supervisor.control import request
from tests.helpers.master import config_text, get, make_dir, running_master
from tests.helpers.nginx import free_port

pytestmark = pytest.mark.slow

TASK = """
[groups.task]
app = "tests.apps.testapp:app"
listen = "http://127.0.0.1:0"
count = 2

[metrics]
listen = "http://127.0.0.1:{metrics}"
"""


def served_by(address: tuple[str, int], connections: int) -> list[int]:
    """The pid that answered each of `connections` fresh connections (5 s each at most)."""
    return [json.loads(get(address, "/info", timeout=5.0)[1])["pid"] for _ in range(connections)]


def test_new_connections_avoid_a_blocked_worker_until_it_turns_again() -> None:
    metrics = free_port()
    directory = make_dir()
    with running_master(config_text(TASK.format(metrics=metrics)), directory) as master:
        slots = master.ready_pids("task")
        since = master.mark()
        blocker = threading.Thread(
            target=get, args=(master.url("task"), "/task/block?seconds=4", 30.0), daemon=True
        )
        blocker.start()
        blocked = int(master.wait_for(r"BLOCKING pid=(\d+)", since).group(1))
        master.wait_for(rf"busy pid={blocked} group=task", since)
        (free_slot,) = [slot for slot, pid in slots.items() if pid != blocked]
        master.wait_for(rf"new connections group=task slots={free_slot}$", since)
        # Every fresh connection now lands on the worker whose loop turns: none waits.
        assert set(served_by(master.url("task"), 40)) == {slots[free_slot]}
        status = request(directory / "aioworker.sock", "status")
        (group,) = status["groups"]
        assert group["accepting"] == [free_slot]
        assert group["busy_episodes"] == {str(1 - free_slot): 1}
        text = httpx.get(f"http://127.0.0.1:{metrics}/metrics").text
        assert f'aioworker_slot_accepting{{group="task",worker="{free_slot}"}} 1' in text
        assert f'aioworker_slot_accepting{{group="task",worker="{1 - free_slot}"}} 0' in text
        assert f'aioworker_slot_busy_total{{group="task",worker="{1 - free_slot}"}} 1' in text
        blocker.join(30)
        master.wait_for(rf"free pid={blocked} group=task", since)
        master.wait_for(r"new connections group=task slots=0,1$", master.mark() - 2)
        # Back in the rotation: 40 connections reach both workers (each 2^-39 to miss one).
        assert set(served_by(master.url("task"), 40)) == set(slots.values())
        group = request(directory / "aioworker.sock", "status")["groups"][0]
        assert group["accepting"] == [0, 1]
