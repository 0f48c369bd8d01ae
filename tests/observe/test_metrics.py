"""Prometheus output checked by the official parser; real HTTP to the master-side responder."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from aioworker.observe.metrics import MetricsServer, readiness, render
from aioworker.observe.scoreboard import WorkerSample
from tests.helpers import observe as observe_helpers
from tests.helpers.client import exchange
from tests.helpers.observe import NOW
from tests.helpers.selectloop import SelectLoop
from tests.helpers.wait import wait_until

BUCKETS = (0.01, 0.1, 1.0)


def sample(pid: int, **changes: Any) -> WorkerSample:
    return observe_helpers.sample(pid, buckets=4, **{"started_wall": 1_700_000_000.5, **changes})


def records(web_ready: int = 2, stopping: bool = False) -> dict[str, Any]:
    web_restarts = {"crash": 2, "timeout": 1}
    return {
        "pid": 1,
        "stopping": stopping,
        "groups": [
            {"name": "web", "expected": 2, "ready": web_ready, "restarts": web_restarts},
            {"name": "task", "expected": 1, "ready": 1, "restarts": {}},
        ],
    }


SAMPLES = [
    sample(11, requests=10, status_classes=(0, 0, 8, 0, 1, 1), latency_counts=(5, 3, 1, 1),
           latency_sum=3.25, bytes_in=1000, bytes_out=5000, connections=2, in_progress=1,
           websockets=3, ws_messages_in=40, ws_messages_out=70),
    sample(12, slot=1, requests=4, status_classes=(0, 0, 4, 0, 0, 0), latency_counts=(4, 0, 0, 0)),
    sample(21, group="task", requests=1, status_classes=(0, 0, 1, 0, 0, 0),
           latency_counts=(0, 0, 0, 1), heartbeat_mono=NOW - 7.5, in_progress=1),
]  # fmt: skip
RSS = {11: 1000, 12: 2000, 21: 3000}


def parse(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """name -> {sorted labels: value} from the official parser."""
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def key(**labels: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


def test_render_parses_and_adds_up() -> None:
    text = render(records(), SAMPLES, NOW, BUCKETS, RSS)
    m = parse(text)
    requests = m["aioworker_requests_total"]
    assert requests[key(group="web", worker="0", code="2xx")] == 8
    assert requests[key(group="web", worker="0", code="5xx")] == 1
    # Counters add up: the sum over series equals the requests the workers counted.
    assert sum(requests.values()) == sum(s.requests for s in SAMPLES)
    buckets = m["aioworker_request_duration_seconds_bucket"]
    web0 = [buckets[key(group="web", worker="0", le=le)] for le in ("0.01", "0.1", "1.0", "+Inf")]
    assert web0 == [5, 8, 9, 10]  # cumulative
    assert m["aioworker_request_duration_seconds_count"][key(group="web", worker="0")] == 10
    assert m["aioworker_request_duration_seconds_sum"][key(group="web", worker="0")] == 3.25
    assert m["aioworker_request_duration_seconds_sum"][key(group="task", worker="0")] == 0
    assert m["aioworker_worker_restarts_total"] == {
        key(group="web", reason="crash"): 2,
        key(group="web", reason="timeout"): 1,
    }
    assert m["aioworker_worker_blocked_seconds"][key(group="task", worker="0")] == 7.5
    assert m["aioworker_worker_blocked_seconds"][key(group="web", worker="0")] == 0
    assert m["aioworker_worker_resident_memory_bytes"][key(group="web", worker="1")] == 2000
    assert m["aioworker_requests_in_progress"][key(group="task", worker="0")] == 1
    assert m["aioworker_connections"][key(group="web", worker="0")] == 2
    assert m["aioworker_received_bytes_total"][key(group="web", worker="0")] == 1000
    assert m["aioworker_sent_bytes_total"][key(group="web", worker="0")] == 5000
    assert m["aioworker_websockets"][key(group="web", worker="0")] == 3
    messages = m["aioworker_websocket_messages_total"]
    assert messages[key(group="web", worker="0", direction="in")] == 40
    assert messages[key(group="web", worker="0", direction="out")] == 70
    assert m["aioworker_group_ready"] == {key(group="web"): 1, key(group="task"): 1}
    assert m["aioworker_group_workers_expected"][key(group="web")] == 2
    assert m["aioworker_worker_start_time_seconds"][key(group="web", worker="0")] == 1_700_000_000.5


def test_every_family_is_typed() -> None:
    """Each sample belongs to the family its TYPE line names: a counter's TYPE must carry the
    _total of its samples, or parsers (Prometheus too) take those samples as untyped."""
    text = render(records(), SAMPLES, NOW, BUCKETS, RSS)
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert {name: f.type for name, f in families.items() if f.type in ("counter", "histogram")} == {
        # the parser names a counter's family without _total
        "aioworker_worker_restarts": "counter",
        "aioworker_requests": "counter",
        "aioworker_request_duration_seconds": "histogram",
        "aioworker_received_bytes": "counter",
        "aioworker_sent_bytes": "counter",
        "aioworker_websocket_messages": "counter",
    }
    assert all(f.type != "unknown" and f.samples for f in families.values())
    histogram = families["aioworker_request_duration_seconds"]
    suffixes = {s.name.rsplit("_", 1)[1] for s in histogram.samples}
    assert suffixes == {"bucket", "count", "sum"}


def test_reload_overlap_sums_one_slot() -> None:
    """Old and new process of one slot during a rolling reload: one series, summed."""
    old = sample(
        11, requests=10, status_classes=(0, 0, 10, 0, 0, 0), in_progress=1, latency_sum=1.5
    )
    new = sample(
        13,
        requests=3,
        status_classes=(0, 0, 3, 0, 0, 0),
        started_wall=1_700_000_100.0,
        latency_sum=0.25,
    )
    text = render(records(), [old, new], NOW, BUCKETS, {11: 100, 13: 50})
    m = parse(text)
    assert m["aioworker_requests_total"][key(group="web", worker="0", code="2xx")] == 13
    assert m["aioworker_worker_resident_memory_bytes"][key(group="web", worker="0")] == 150
    assert m["aioworker_request_duration_seconds_sum"][key(group="web", worker="0")] == 1.75
    assert m["aioworker_worker_start_time_seconds"][key(group="web", worker="0")] == 1_700_000_100
    # The parser would accept duplicates; the text must not contain any.
    series = [line.split(" ")[0] for line in text.splitlines() if not line.startswith("#")]
    assert len(series) == len(set(series))


def test_label_values_escaped() -> None:
    odd = 'we"b\\x\n'
    text = render({"groups": [{"name": odd, "expected": 1, "ready": 0}]}, [], NOW, BUCKETS)
    m = parse(text)
    assert m["aioworker_group_ready"] == {key(group=odd): 0}


@pytest.mark.parametrize(
    ("doc", "ok", "reason"),
    [
        pytest.param(records(), True, "ready", id="all-ready"),
        pytest.param(records(web_ready=1), False, "not ready: web 1/2", id="one-short"),
        pytest.param(records(stopping=True), False, "stopping", id="stopping"),
    ],
)
def test_readiness(doc: dict[str, Any], ok: bool, reason: str) -> None:
    assert readiness(doc) == (ok, reason)


# ------------------------------------------------------------------ the HTTP responder


@pytest.fixture
def state() -> dict[str, Any]:
    return {"records": records(), "samples": SAMPLES}


@pytest.fixture
def served(
    state: dict[str, Any], request: pytest.FixtureRequest
) -> Iterator[tuple[str, MetricsServer]]:
    server = MetricsServer(
        "http://127.0.0.1:0",
        lambda: render(state["records"], state["samples"], NOW, BUCKETS, RSS),
        lambda: readiness(state["records"]),
        timeout=getattr(request, "param", 0.5),
        max_connections=4,
    )
    loop = SelectLoop()
    server.attach(loop.selector)
    loop.ticks.append(server.tick)
    loop.start()
    yield f"http://127.0.0.1:{server.port}", server
    loop.stop()
    server.close()


def test_http_metrics(served: tuple[str, MetricsServer]) -> None:
    base, _ = served
    response = httpx.get(base + "/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    m = parse(response.text)
    assert sum(m["aioworker_requests_total"].values()) == 15
    head = httpx.head(base + "/metrics")
    assert head.status_code == 200
    assert head.content == b""
    assert int(head.headers["content-length"]) == len(response.content)


def test_http_health_and_readiness(
    served: tuple[str, MetricsServer], state: dict[str, Any]
) -> None:
    base, _ = served
    assert httpx.get(base + "/healthz").status_code == 200
    assert httpx.get(base + "/readyz").status_code == 200
    state["records"] = records(web_ready=1)  # a web worker died
    response = httpx.get(base + "/readyz")
    assert (response.status_code, response.text) == (503, "not ready: web 1/2\n")
    assert httpx.get(base + "/healthz").status_code == 200  # the master itself is fine
    state["records"] = records()  # replaced
    assert httpx.get(base + "/readyz?verbose=1").status_code == 200


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        pytest.param(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 200, id="ok"),
        pytest.param(b"GET /healthz HTTP/1.0\n\n", 200, id="bare-lf"),
        pytest.param(b"POST /metrics HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi", 405, id="post"),
        pytest.param(b"GET /nope HTTP/1.1\r\n\r\n", 404, id="unknown-path"),
        pytest.param(b"GET /metricsx HTTP/1.1\r\n\r\n", 404, id="prefix-only"),
        pytest.param(b"hello\r\n\r\n", 400, id="garbage"),
        pytest.param(b"GET metrics HTTP/1.1\r\n\r\n", 400, id="not-origin-form"),
        pytest.param(b"GET /metrics SPDY/3\r\n\r\n", 400, id="bad-version"),
        pytest.param(b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n", 400, id="too-long"),
    ],
)
def test_http_bad_requests(served: tuple[str, MetricsServer], raw: bytes, status: int) -> None:
    _, server = served
    reply = exchange(("127.0.0.1", server.port), raw)
    assert reply.startswith(f"HTTP/1.1 {status} ".encode())
    assert b"\r\nConnection: close\r\n" in reply


@pytest.mark.parametrize("served", [1.5], indirect=True)
def test_slow_and_silent_clients_never_block(served: tuple[str, MetricsServer]) -> None:
    base, server = served
    silent = socket.create_connection(("127.0.0.1", server.port))
    trickle = socket.create_connection(("127.0.0.1", server.port))
    trickle.sendall(b"GET /metr")
    started = time.monotonic()
    assert httpx.get(base + "/healthz", timeout=2).status_code == 200
    assert time.monotonic() - started < 1.0  # long before their 1.5 s deadline
    for sock in (silent, trickle):
        sock.settimeout(5)
        assert sock.recv(100) == b""  # closed at the deadline, nothing sent
        sock.close()


def test_connection_cap(served: tuple[str, MetricsServer]) -> None:
    base, server = served
    hogs = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(4)]
    # Wait until the loop accepted them all (an event: the server's own count).
    wait_until(lambda: len(server.server.connections) >= 4, what="4 connections accepted")
    extra = socket.create_connection(("127.0.0.1", server.port))
    extra.settimeout(5)
    assert extra.recv(100) == b""  # refused at once, not queued behind the hogs
    extra.close()
    for sock in hogs:
        sock.close()

    def healthy() -> bool:
        try:
            response = httpx.get(base + "/healthz", timeout=2)
        except httpx.TransportError:
            return False
        assert response.status_code == 200
        return True

    wait_until(healthy, 5.0, "the server to answer once the hogs left")
