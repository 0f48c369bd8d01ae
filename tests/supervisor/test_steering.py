"""New connections go to workers that can serve them: a blocked worker's slot is steered away
from until its loop turns again (real master, real workers, real connections)."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading

import httpx
import pytest

from aioworker.supervisor.control import request
from tests.helpers.client import RawConn
from tests.helpers.master import config_text, get, group_table, make_dir, running_master
from tests.helpers.nginx import free_port
from tests.helpers.wait import wait_until

pytestmark = pytest.mark.slow

TWO = group_table("task", 2, reuse_port="true")  # per-slot sockets: what is steered
TASK = TWO + '\n[metrics]\nlisten = "http://127.0.0.1:{metrics}"\n'


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
        (free_slot,) = [slot for slot, pid in slots.items() if pid != blocked]
        master.wait_for(rf"new connections group=task slots={free_slot}$", since)
        # Every fresh connection now lands on the worker whose loop turns: none waits.
        assert set(served_by(master.url("task"), 40)) == {slots[free_slot]}
        status = request(directory / "aioworker.sock", "status")
        (group,) = status["groups"]
        assert 1 - free_slot not in group["accepting"]
        assert group["busy_episodes"][str(1 - free_slot)] == 1
        text = httpx.get(f"http://127.0.0.1:{metrics}/metrics").text
        assert f'aioworker_slot_accepting{{group="task",worker="{1 - free_slot}"}} 0' in text
        assert f'aioworker_slot_busy_total{{group="task",worker="{1 - free_slot}"}} 1' in text
        assert 'aioworker_slot_moved_connections_total{group="task",worker="0"}' in text
        blocker.join(30)
        master.wait_for(r"new connections group=task slots=0,1$", since)
        # Back in the rotation: 40 connections reach both workers (each 2^-39 to miss one).
        assert set(served_by(master.url("task"), 40)) == set(slots.values())
        group = request(directory / "aioworker.sock", "status")["groups"][0]
        assert group["accepting"] == [0, 1]


@pytest.mark.parametrize("fault", ["frozen", "missing"])
def test_connections_queued_on_a_slot_that_goes_bad_are_moved(fault: str) -> None:
    """The master is held (SIGSTOP) while the fault happens and 24 connections queue on both
    slots as the kernel spreads them; once it runs again, those on the bad slot are moved to
    the good one instead of waiting for the fault to end (or for ever, for a missing worker)."""
    directory = make_dir()
    raw = b"GET /info HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    with running_master(config_text(TWO), directory) as master:
        slots = master.ready_pids("task")
        bad, good = slots[0], slots[1]
        since = master.mark()
        master.signal(signal.SIGSTOP)
        try:
            if fault == "frozen":
                os.kill(bad, signal.SIGSTOP)
            else:  # the slot's worker died and its replacement cannot start
                (directory / "FAIL_IMPORT").write_text("")
                os.kill(bad, signal.SIGKILL)
            clients = [RawConn.connect(master.url("task"), timeout=10.0) for _ in range(24)]
            for client in clients:
                client.send(raw)
        finally:
            master.signal(signal.SIGCONT)
        try:
            served = [json.loads(c.read_response(timeout=10.0).body)["pid"] for c in clients]
            assert served == [good] * 24
            pattern = r"moved (\d+) queued connections group=task slot=0"
            status = request(directory / "aioworker.sock", "status")
            (slot, moved), *_ = status["groups"][0]["moved"].items()
            assert slot == "0"
            assert moved >= 1

            def logged() -> int:
                return sum(int(m.group(1)) for m in master.all_matches(pattern, since))

            # The log lines reach the test through a pipe: wait for the last of them.
            wait_until(lambda: logged() == moved, what="the moves logged as counted")
        finally:
            for client in clients:
                client.close()
            if fault == "frozen":
                os.kill(bad, signal.SIGCONT)


@pytest.mark.parametrize(
    ("silent_from", "trusted"),
    [
        pytest.param("127.0.0.1", '["127.0.0.1"]', id="evicted"),  # a trusted peer: no cap
        pytest.param("127.0.0.2", "[]", id="capped"),  # 256 per worker from one address
    ],
)
def test_silent_connections_do_not_lock_out_other_clients(silent_from: str, trusted: str) -> None:
    """3,000 connections that send nothing, against a 2-worker group of 1,024 connections
    each: a normal client's requests during them are served, each within a second."""
    # Silent clients are not timed out meanwhile.
    group = group_table("task", 2, reuse_port="true", header_timeout="60.0")
    config = config_text(group, server=f"forwarded_allow_ips = {trusted}\n")
    with running_master(config) as master:
        silent: list[socket.socket] = []
        try:
            for _ in range(3000):
                sock = socket.socket()
                sock.bind((silent_from, 0))
                sock.connect(master.url("task"))
                silent.append(sock)
            served = 0
            for _ in range(100):
                try:
                    status, _body = get(master.url("task"), "/info", timeout=1.0)
                except (OSError, TimeoutError):
                    continue
                served += status == 200
            assert served >= 99
        finally:
            for sock in silent:
                sock.close()


@pytest.mark.parametrize("fault", ["blocked", "frozen", "missing"])
def test_default_shared_listener_serves_around_a_bad_worker(fault: str) -> None:
    """The default listener (one socket the group's workers share): a worker that is blocked,
    frozen (SIGSTOP) or gone takes nothing from the queue; 24 fresh connections are all
    answered by the other worker."""
    directory = make_dir()
    with running_master(config_text(group_table("task", 2)), directory) as master:
        assert master.all_matches(r"listening group=task .* sockets=1")
        slots = master.ready_pids("task")
        bad, good = slots[0], slots[1]
        since = master.mark()
        if fault == "blocked":
            blocker = threading.Thread(
                target=get, args=(master.url("task"), "/task/block?seconds=3", 30.0), daemon=True
            )
            blocker.start()
            bad = int(master.wait_for(r"BLOCKING pid=(\d+)", since).group(1))
            good = next(pid for pid in slots.values() if pid != bad)
        elif fault == "frozen":
            os.kill(bad, signal.SIGSTOP)
        else:
            (directory / "FAIL_IMPORT").write_text("")
            os.kill(bad, signal.SIGKILL)
            master.wait_for(rf"worker died pid={bad} ", since)
        try:
            assert served_by(master.url("task"), 24) == [good] * 24
        finally:
            if fault == "frozen":
                os.kill(bad, signal.SIGCONT)
            if fault == "blocked":
                blocker.join(30)
