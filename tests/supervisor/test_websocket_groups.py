"""WebSockets under a real master: a rolling reload closes them with 1001 after
graceful_timeout and new ones reach the new worker; max_requests counts a WebSocket once."""

from __future__ import annotations

import signal
import threading

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.helpers.master import config_text, running_master

pytestmark = pytest.mark.slow


def ws_group(**keys: str) -> str:
    lines = [
        "[groups.ws]",
        'app = "tests.apps.wsapp:app"',
        'listen = "http://127.0.0.1:0"',
        "count = 1",
        *(f"{key} = {value}" for key, value in keys.items()),
    ]
    return "\n" + "\n".join(lines) + "\n"


def test_rolling_reload_closes_websockets_1001_and_moves_new_ones() -> None:
    with running_master(config_text(ws_group(), graceful=1.0)) as master:
        host, port = master.url("ws")
        with connect(f"ws://{host}:{port}/pid", open_timeout=10) as old:
            old_pid = int(old.recv(timeout=10))
            since = master.mark()
            master.signal(signal.SIGHUP)
            master.wait_for(r"ready group=ws slot=0 pid=(\d+)", since)
            # Served on through the reload until graceful_timeout, then "going away".
            old.send("still")
            assert old.recv(timeout=10) == "still"
            with pytest.raises(ConnectionClosed):
                old.recv(timeout=15)
            assert old.close_code == 1001
        with connect(f"ws://{host}:{port}/pid", open_timeout=10) as new:
            assert int(new.recv(timeout=10)) != old_pid


def test_max_requests_counts_a_websocket_once() -> None:
    with running_master(config_text(ws_group(max_requests="3"))) as master:
        host, port = master.url("ws")
        with connect(f"ws://{host}:{port}/pid", open_timeout=10) as ws:
            first_pid = int(ws.recv(timeout=10))
            for n in range(20):  # many messages: still one request
                ws.send(str(n))
                assert ws.recv(timeout=10) == str(n)
        assert not master.all_matches(r"max_requests")
        pids = set()
        for _ in range(2):  # the second and third requests reach the limit of 3
            with connect(f"ws://{host}:{port}/pid", open_timeout=10) as ws:
                pids.add(int(ws.recv(timeout=10)))
        assert pids == {first_pid}
        master.wait_for(r"max_requests")


def test_watchdog_and_deadline_leave_a_long_lived_websocket_alone() -> None:
    group = ws_group(timeout="1.0", request_timeout="0.5")
    with running_master(config_text(group)) as master:
        host, port = master.url("ws")
        with connect(f"ws://{host}:{port}/pid", open_timeout=10) as ws:
            pid = int(ws.recv(timeout=10))
            for n in range(3):  # three watchdog timeouts and six request deadlines long
                threading.Event().wait(1.0)
                ws.send(str(n))
                assert ws.recv(timeout=10) == str(n)
        assert master.ready_pids("ws") == {0: pid}
        assert not master.all_matches(r"deadline|killed|blocked")
