"""WebSockets under a real master: a rolling reload closes them with 1001 after
graceful_timeout and new ones reach the new worker; max_requests counts a WebSocket once; the
watchdog and the deadline leave a long-lived one alone; an https:// group serves wss."""

from __future__ import annotations

import json
import signal
import threading

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.helpers.master import config_text, make_dir, running_master
from tests.helpers.tls import client_context, self_signed

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


def test_an_https_group_serves_wss() -> None:
    directory = make_dir()
    cert, _ = self_signed(directory)
    group = """
[groups.ws]
app = "tests.apps.wsapp:app"
listen = "https://127.0.0.1:0"
certfile = "server.crt"
keyfile = "server.key"
count = 1
"""
    with running_master(config_text(group), directory) as master:
        port = int(master.wait_for(r"listening group=ws url=https://127\.0\.0\.1:(\d+)").group(1))
        context = client_context(cert)
        with connect(f"wss://127.0.0.1:{port}/scope", ssl=context, open_timeout=10) as ws:
            scope = json.loads(ws.recv(timeout=10))
            assert scope["scheme"] == "wss"
            ws.send(b"\x00" * 300_000)  # several TLS records
            assert ws.recv(timeout=10) == b"\x00" * 300_000
