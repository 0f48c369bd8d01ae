"""A queue-fed group's numbers in `status` (JSON and table) and /metrics, read from Redis."""

from __future__ import annotations

import asyncio
import subprocess
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from aioworker.supervisor.control import request
from tests.helpers.burst import burst
from tests.helpers.master import PYTHON, MasterProcess, running_master
from tests.helpers.redis import RedisServer
from tests.helpers.wait import wait_until
from tests.queue.configs import queue_config, queue_group, web_group

METRICS = '\n[metrics]\nlisten = "http://127.0.0.1:0"\n'


def _queue(master: MasterProcess) -> dict[str, Any]:
    doc = request(master.directory / "aioworker.sock", "status")
    found: dict[str, Any] = next(g for g in doc["groups"] if g["name"] == "report")["queue"]
    return found


def _metrics(master: MasterProcess) -> dict[str, float]:
    port = int(master.wait_for(r"metrics on http://127.0.0.1:(\d+)").group(1))
    text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith("aioworker_queue") and sample.labels == {"group": "report"}
    }


def test_completed_and_redelivered_counts_in_status_and_metrics(redis: RedisServer) -> None:
    config = queue_config(redis.url, web_group() + queue_group()) + METRICS
    with running_master(config) as master:
        answers = asyncio.run(burst(master.url("web"), [f"/work?n={i}&ms=1" for i in range(20)]))
        assert {a.status for a in answers} == {200}
        numbers = _queue(master)
        assert numbers == {
            "reachable": True,
            "depth": 0,
            "in_progress": 0,
            "oldest_age": 0.0,
            "completed": 20,
            "failed": 0,
            "redelivered": 0,
        }
        assert _metrics(master) == {
            "aioworker_queue_reachable": 1.0,
            "aioworker_queue_depth": 0.0,
            "aioworker_queue_oldest_age_seconds": 0.0,
            "aioworker_queue_in_progress": 0.0,
            "aioworker_queue_completed_total": 20.0,
            "aioworker_queue_failed_total": 0.0,
            "aioworker_queue_redelivered_total": 0.0,
        }
        table = subprocess.run(
            [PYTHON, "-m", "aioworker", "status", "-c", "config.toml"],
            cwd=master.directory,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert "report  running  (queue)" in table
        assert "queue: depth 0  oldest 0.0s  in progress 0  completed 20  failed 0" in table


def test_depth_and_oldest_age_of_jobs_nobody_pulls_then_redis_away(redis: RedisServer) -> None:
    config = queue_config(redis.url, web_group() + queue_group(reply_timeout=0.2), consume=False)
    with running_master(config + METRICS) as master:
        answers = asyncio.run(burst(master.url("web"), [f"/work?n={i}" for i in range(3)]))
        assert {a.status for a in answers} == {202}
        numbers = _queue(master)
        assert (numbers["depth"], numbers["in_progress"], numbers["completed"]) == (3, 0, 0)
        assert numbers["oldest_age"] >= 0.2
        assert _metrics(master)["aioworker_queue_depth"] == 3.0
        redis.stop()
        assert _queue(master) == {"reachable": False}
        assert _metrics(master) == {"aioworker_queue_reachable": 0.0}


def test_queue_fed_workers_count_their_jobs_in_the_scoreboard(redis: RedisServer) -> None:
    config = queue_config(redis.url, web_group() + queue_group(count=1, reply_timeout=0.2))
    with running_master(config) as master:
        answers = asyncio.run(burst(master.url("web"), [f"/work?n={i}&ms=1" for i in range(5)]))
        assert {a.status for a in answers} == {200}
        socket_path = master.directory / "aioworker.sock"

        def report() -> dict[str, Any]:
            doc = request(socket_path, "status")
            found: dict[str, Any] = next(g for g in doc["groups"] if g["name"] == "report")
            return found

        wait_until(lambda: report()["requests"] == 5, 10.0)
        assert report()["workers"][0]["responses"] == {"2xx": 5}

        # A job running now is the worker's request in progress, shown with its path.
        assert asyncio.run(burst(master.url("web"), ["/long?ms=3000"]))[0].status == 202
        wait_until(lambda: report()["workers"][0]["oldest_request"] is not None, 10.0)
        oldest = report()["workers"][0]["oldest_request"]
        assert (oldest["method"], oldest["path"]) == ("GET", "/long")
