"""Open WebSockets and their messages, per worker, in status and /metrics of a real master."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.sync.client import connect

from aioworker.supervisor.control import request
from tests.helpers.master import config_text, running_master
from tests.helpers.nginx import free_port
from tests.helpers.wait import wait_until

pytestmark = pytest.mark.slow

GROUP = """
[groups.ws]
app = "tests.apps.wsapp:app"
listen = "http://127.0.0.1:0"
count = 1
"""


def test_status_and_metrics_count_websockets() -> None:
    port = free_port()
    metrics = f'\n[metrics]\nlisten = "http://127.0.0.1:{port}"\n'
    with running_master(config_text(GROUP) + metrics) as master:
        host, ws_port = master.url("ws")

        def worker() -> dict[str, Any]:
            doc = request(master.directory / "aioworker.sock", "status")
            (found,) = next(g for g in doc["groups"] if g["name"] == "ws")["workers"]
            return dict(found)

        def series() -> dict[str, float]:
            text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
            return {
                s.name
                + "".join(f",{v}" for k, v in sorted(s.labels.items()) if k == "direction"): s.value
                for family in text_string_to_metric_families(text)
                for s in family.samples
                if s.name.startswith("aioworker_websocket")
            }

        with connect(f"ws://{host}:{ws_port}/echo") as one, connect(f"ws://{host}:{ws_port}/echo"):
            for n in range(3):
                one.send(str(n))
                assert one.recv(timeout=10) == str(n)
            counted = wait_until(
                lambda: (w := worker())["websockets"] == 2 and w["ws_messages_out"] == 3 and w,
                10,
                "status to show 2 WebSockets",
            )
            assert counted["ws_messages_in"] == 3
            assert counted["requests"] == 2  # one per handshake

            def two_open() -> dict[str, float] | None:
                m = series()
                return m if m["aioworker_websockets"] == 2 else None

            found = wait_until(two_open, 10, "/metrics to show 2 WebSockets")
            assert found["aioworker_websocket_messages_total,in"] == 3
            assert found["aioworker_websocket_messages_total,out"] == 3
        wait_until(lambda: worker()["websockets"] == 0, 10, "status to show none open")
