"""Prometheus metrics and health checks, rendered and served by the master itself.

``render()`` turns the master's records, a scoreboard snapshot and RSS samples into the
Prometheus text format (version 0.0.4). Series are labelled by group and worker *slot*, not
pid, so a replaced worker continues its series (counters restart from zero, which Prometheus'
``rate()`` handles as a reset); during a rolling reload the old and the new process of a slot
are summed so no series is ever duplicated.

``MetricsServer`` answers ``GET /metrics``, ``/healthz`` (200 while the master's loop runs) and
``/readyz`` (200 when every group has all its workers ready, else 503 naming the groups) on the
master's selector, one request per connection, never blocking the master
(``aioworker.http.oneshot``).
It lives in the master, so a group whose every worker is blocked cannot delay it.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from aioworker.config import parse_listen
from aioworker.http.oneshot import OneShotServer, OneShotService
from aioworker.observe.scoreboard import WorkerSample
from aioworker.observe.watchdog import BLOCKED_AFTER
from aioworker.sockets import bind_listen

__all__ = ["CONTENT_TYPE", "MetricsServer", "readiness", "render"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(**labels: str) -> str:
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items()) + "}"


def _le(bound: float) -> str:
    return f"{bound:g}" if bound != int(bound) else f"{bound:.1f}"


class _Family:
    __slots__ = ("help", "kind", "lines", "name")

    def __init__(self, name: str, kind: str, help: str) -> None:
        self.name, self.kind, self.help = name, kind, help
        self.lines: list[str] = []

    def add(self, value: float, suffix: str = "", **labels: str) -> None:
        text = repr(float(value)) if isinstance(value, float) else str(value)
        self.lines.append(f"{self.name}{suffix}{_labels(**labels)} {text}")

    def text(self) -> str:
        head = f"# HELP {self.name} {self.help}\n# TYPE {self.name} {self.kind}\n"
        return head + "".join(line + "\n" for line in self.lines)


class _Slot:
    """The processes of one (group, slot), summed: usually one, two during a reload."""

    def __init__(self, nbuckets: int) -> None:
        self.classes = [0] * 6
        self.latency = [0] * (nbuckets + 1)
        self.latency_sum = 0.0
        self.requests = self.in_progress = self.connections = 0
        self.bytes_in = self.bytes_out = self.rss = 0
        self.websockets = self.ws_in = self.ws_out = 0
        self.blocked = 0.0
        self.started = 0.0

    def add(self, s: WorkerSample, now: float, rss: int | None, blocked_after: float) -> None:
        for i, n in enumerate(s.status_classes):
            self.classes[i] += n
        for i, n in enumerate(s.latency_counts[: len(self.latency)]):
            self.latency[i] += n
        self.latency_sum += s.latency_sum
        self.requests += s.requests
        self.in_progress += s.in_progress
        self.connections += s.connections
        self.bytes_in += s.bytes_in
        self.bytes_out += s.bytes_out
        self.websockets += s.websockets
        self.ws_in += s.ws_messages_in
        self.ws_out += s.ws_messages_out
        self.rss += rss or 0
        age = s.heartbeat_age(now)
        if age is not None and age >= blocked_after:
            self.blocked = max(self.blocked, age)
        self.started = max(self.started, s.started_wall)


def render(
    master: Mapping[str, Any],
    samples: Iterable[WorkerSample],
    now: float,
    buckets: Sequence[float],
    rss: Mapping[int, int] | None = None,
    *,
    blocked_after: float = BLOCKED_AFTER,
) -> str:
    """The exposition text; `master` is ``Master.status()``, `now` is time.monotonic()."""
    rss = rss or {}
    # In the 0.0.4 text format a TYPE line names the samples as written, so a counter's family
    # is its full name with _total (a TYPE without it leaves the samples untyped to a parser).
    families = {
        name: _Family(name, kind, text)
        for name, kind, text in (
            ("aioworker_group_workers_expected", "gauge", "Workers the group should run."),
            ("aioworker_group_workers_ready", "gauge", "Workers of the group ready to serve."),
            ("aioworker_group_ready", "gauge", "1 when every worker of the group is ready."),
            ("aioworker_worker_restarts_total", "counter", "Unplanned worker exits by reason."),
            ("aioworker_slot_accepting", "gauge", "1 while new connections go to the slot "
             "(groups with per-slot sockets)."),
            ("aioworker_slot_busy_total", "counter", "Times the slot's worker was seen blocked "
             "and new connections were steered away from it."),
            ("aioworker_slot_moved_connections_total", "counter", "Connections queued on the "
             "slot while it could not accept them, handed by the master to another worker."),
            ("aioworker_requests_total", "counter", "Requests served, by status class."),
            ("aioworker_requests_in_progress", "gauge", "Requests being served."),
            ("aioworker_request_duration_seconds", "histogram", "Time to serve a request."),
            ("aioworker_connections", "gauge", "Open client connections."),
            ("aioworker_received_bytes_total", "counter", "Bytes received from clients."),
            ("aioworker_sent_bytes_total", "counter", "Bytes sent to clients."),
            ("aioworker_websockets", "gauge", "Open WebSockets."),
            ("aioworker_websocket_messages_total", "counter", "WebSocket messages, by "
             "direction (in: from clients, out: to clients)."),
            ("aioworker_worker_blocked_seconds", "gauge", "Seconds the event loop has been "
             "blocked (0 while it runs)."),
            ("aioworker_worker_resident_memory_bytes", "gauge", "Resident memory (RSS)."),
            ("aioworker_worker_start_time_seconds", "gauge", "Start of the worker process "
             "(unix time)."),
        )
    }  # fmt: skip
    f = families
    for group in master.get("groups", []):
        name = str(group.get("name", ""))
        expected, ready = int(group.get("expected", 0)), int(group.get("ready", 0))
        f["aioworker_group_workers_expected"].add(expected, group=name)
        f["aioworker_group_workers_ready"].add(ready, group=name)
        f["aioworker_group_ready"].add(int(ready >= expected), group=name)
        for reason, count in sorted(dict(group.get("restarts", {})).items()):
            f["aioworker_worker_restarts_total"].add(count, group=name, reason=str(reason))
        accepting = group.get("accepting")
        if accepting is not None:
            episodes = dict(group.get("busy_episodes", {}))
            moved = dict(group.get("moved", {}))
            for number in range(expected):
                labels = {"group": name, "worker": str(number)}
                f["aioworker_slot_accepting"].add(int(number in accepting), **labels)
                f["aioworker_slot_busy_total"].add(int(episodes.get(str(number), 0)), **labels)
                f["aioworker_slot_moved_connections_total"].add(
                    int(moved.get(str(number), 0)), **labels
                )
    slots: dict[tuple[str, int], _Slot] = {}
    for s in samples:
        if not s.pid:
            continue
        slot = slots.setdefault((s.group, s.slot), _Slot(len(buckets)))
        slot.add(s, now, rss.get(s.pid), blocked_after)
    for (group_name, number), slot in sorted(slots.items()):
        labels = {"group": group_name, "worker": str(number)}
        for cls in range(1, 6):
            f["aioworker_requests_total"].add(slot.classes[cls], **labels, code=f"{cls}xx")
        f["aioworker_requests_in_progress"].add(slot.in_progress, **labels)
        histogram = f["aioworker_request_duration_seconds"]
        cumulative = 0
        for bound, count in zip([*buckets, None], slot.latency, strict=True):
            cumulative += count
            le = "+Inf" if bound is None else _le(bound)
            histogram.add(cumulative, "_bucket", **labels, le=le)
        histogram.add(cumulative, "_count", **labels)
        histogram.add(round(slot.latency_sum, 6), "_sum", **labels)
        f["aioworker_connections"].add(slot.connections, **labels)
        f["aioworker_received_bytes_total"].add(slot.bytes_in, **labels)
        f["aioworker_sent_bytes_total"].add(slot.bytes_out, **labels)
        f["aioworker_websockets"].add(slot.websockets, **labels)
        f["aioworker_websocket_messages_total"].add(slot.ws_in, **labels, direction="in")
        f["aioworker_websocket_messages_total"].add(slot.ws_out, **labels, direction="out")
        f["aioworker_worker_blocked_seconds"].add(round(slot.blocked, 3), **labels)
        f["aioworker_worker_resident_memory_bytes"].add(slot.rss, **labels)
        f["aioworker_worker_start_time_seconds"].add(round(slot.started, 3), **labels)
    return "".join(family.text() for family in families.values() if family.lines)


def readiness(master: Mapping[str, Any]) -> tuple[bool, str]:
    """(every group has its workers ready, a one-line reason)."""
    if master.get("stopping"):
        return False, "stopping"
    missing = [
        f"{g.get('name')} {g.get('ready', 0)}/{g.get('expected', 0)}"
        for g in master.get("groups", [])
        if int(g.get("ready", 0)) < int(g.get("expected", 0))
    ]
    if missing:
        return False, "not ready: " + ", ".join(missing)
    return True, "ready"


_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            503: "Service Unavailable"}  # fmt: skip


def _response(status: int, body: bytes, content_type: str, head: bool, extra: str = "") -> bytes:
    header = (
        f"HTTP/1.1 {status} {_REASONS[status]}\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
        f"Cache-Control: no-store\r\nConnection: close\r\n{extra}\r\n"
    )
    return header.encode("latin-1") + (b"" if head else body)


class MetricsServer(OneShotService):
    """GET /metrics, /healthz and /readyz on the master's selector loop."""

    def __init__(
        self,
        listen: str,
        metrics: Callable[[], str],
        ready: Callable[[], tuple[bool, str]],
        *,
        timeout: float = 5.0,
        max_connections: int = 32,
    ) -> None:
        self.listen = listen  # as configured (the port may be 0)
        self.address = parse_listen(listen)
        self._metrics = metrics
        self._ready = ready
        sock = bind_listen(self.address)
        self.server = OneShotServer(
            sock,
            self._respond,
            lambda data: b"\r\n\r\n" in data or b"\n\n" in data,
            max_request=8192,
            timeout=timeout,
            max_connections=max_connections,
        )

    @property
    def port(self) -> int:
        return int(self.server.sock.getsockname()[1]) if not self.address.is_unix else 0

    @property
    def url(self) -> str:
        """Where it listens, with the port the kernel chose for port 0."""
        if self.address.is_unix:
            return str(self.address)
        return str(dataclasses.replace(self.address, port=self.port))

    def close(self) -> None:
        super().close()
        if self.address.is_unix:
            try:
                os.unlink(self.address.path)
            except OSError:
                pass

    def _respond(self, data: bytes) -> bytes:
        line = data.split(b"\n", 1)[0].rstrip(b"\r")
        parts = line.split(b" ")
        text = "text/plain; charset=utf-8"
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1.") or not parts[1].startswith(b"/"):
            return _response(400, b"bad request\n", text, False)
        method, target = parts[0], parts[1].split(b"?", 1)[0]
        head = method == b"HEAD"
        if method not in (b"GET", b"HEAD"):
            return _response(405, b"method not allowed\n", text, False, "Allow: GET, HEAD\r\n")
        if target == b"/metrics":
            return _response(200, self._metrics().encode(), CONTENT_TYPE, head)
        if target == b"/healthz":
            return _response(200, b"ok\n", text, head)
        if target == b"/readyz":
            ok, reason = self._ready()
            return _response(200 if ok else 503, reason.encode() + b"\n", text, head)
        return _response(404, b"not found: try /metrics, /healthz or /readyz\n", text, head)
