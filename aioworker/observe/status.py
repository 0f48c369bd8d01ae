"""Status document: the master's records joined with the scoreboard, as JSON data or a table.

``build()`` takes the master's plain status (``Master.status()``: groups with listen, expected,
ready, failing, restarts, last_exits and workers with pid, slot, state, uptime), a scoreboard
snapshot and RSS samples, and returns plain JSON-able data; ``render()`` prints it for people.
A worker is *blocked* when its loop has not beaten for ``blocked_after`` seconds; it then shows
what it is serving (the scoreboard's oldest request in progress, refreshed by the watchdog).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from aioworker.observe.scoreboard import WorkerSample
from aioworker.observe.watchdog import BLOCKED_AFTER, read_rss

__all__ = ["build", "format_bytes", "format_duration", "render", "worker_state"]


def worker_state(
    sample: WorkerSample | None, lifecycle: str, now: float, blocked_after: float = BLOCKED_AFTER
) -> tuple[str, float | None]:
    """(idle | busy | blocked | starting | draining, seconds blocked or None)."""
    if sample is not None:
        age = sample.heartbeat_age(now)
        if age is not None and age >= blocked_after:
            return "blocked", round(age, 1)
    # The master's record is authoritative (it hears "ready" and sends the drain signal).
    if lifecycle in ("starting", "draining"):
        return lifecycle, None
    if sample is not None and sample.in_progress:
        return "busy", None
    return "idle", None


def build(
    master: Mapping[str, Any],
    samples: Iterable[WorkerSample],
    now: float,
    rss: Mapping[int, int] | None = None,
    *,
    blocked_after: float = BLOCKED_AFTER,
) -> dict[str, Any]:
    """The status document; `now` is time.monotonic(), `rss` maps pid to bytes (None: read)."""
    by_pid = {s.pid: s for s in samples if s.pid}
    groups = []
    for group in master.get("groups", []):
        workers = []
        for record in group.get("workers", []):
            pid = int(record["pid"])
            sample = by_pid.get(pid)
            lifecycle = str(record.get("state", sample.state if sample else "starting"))
            state, blocked_for = worker_state(sample, lifecycle, now, blocked_after)
            memory = rss.get(pid) if rss is not None else read_rss(pid)
            worker: dict[str, Any] = {
                "pid": pid,
                "slot": record.get("slot", sample.slot if sample else 0),
                "generation": record.get("generation", 0),
                "state": state,
                "busy": bool(record.get("busy", False)),
                "blocked_for": blocked_for,
                "uptime": record.get(
                    "uptime", round(now - sample.started_mono, 3) if sample else None
                ),
                "rss_bytes": memory,
                "requests": 0,
                "in_progress": 0,
                "connections": 0,
                "bytes_in": 0,
                "bytes_out": 0,
                "websockets": 0,
                "ws_messages_in": 0,
                "ws_messages_out": 0,
                "responses": {},
                "oldest_request": None,
            }
            if sample is not None:
                worker.update(
                    requests=sample.requests,
                    in_progress=sample.in_progress,
                    connections=sample.connections,
                    bytes_in=sample.bytes_in,
                    bytes_out=sample.bytes_out,
                    websockets=sample.websockets,
                    ws_messages_in=sample.ws_messages_in,
                    ws_messages_out=sample.ws_messages_out,
                    responses={
                        f"{n}xx": count
                        for n, count in enumerate(sample.status_classes)
                        if n and count
                    },
                )
                if sample.oldest is not None and (sample.in_progress or state == "blocked"):
                    worker["oldest_request"] = {
                        "method": sample.oldest.method,
                        "path": sample.oldest.path,
                        "age": round(max(0.0, now - sample.oldest.started), 1),
                    }
            workers.append(worker)
        expected = int(group.get("expected", 0))
        ready = int(group.get("ready", 0))
        if master.get("stopping"):
            state = "stopping"
        elif group.get("failing"):
            state = "failing"
        elif group.get("reloading"):
            state = "reloading"
        elif expected == 0:
            state = "stopped" if not workers else "stopping"
        else:
            state = "running" if ready >= expected else "degraded"
        groups.append(
            {
                "name": group.get("name", ""),
                "state": state,
                "listen": group.get("listen", ""),
                "ready": ready,
                "expected": expected,
                "restarts": dict(group.get("restarts", {})),
                "last_exits": list(group.get("last_exits", [])),
                "accepting": group.get("accepting"),
                "busy_episodes": dict(group.get("busy_episodes", {})),
                "moved": dict(group.get("moved", {})),
                "requests": sum(w["requests"] for w in workers),
                "in_progress": sum(w["in_progress"] for w in workers),
                "workers": workers,
            }
        )
    doc = {k: v for k, v in master.items() if k != "groups"}
    doc["groups"] = groups
    return doc


def format_duration(seconds: float | None) -> str:
    """Short human durations: 0.4s, 12.3s, 4m05s, 3h02m, 2d04h."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def format_bytes(value: int | None) -> str:
    if value is None:
        return "-"
    size = float(value)
    for unit in ("B", "K", "M", "G"):
        if size < 1024 or unit == "G":
            return f"{size:.0f}{unit}" if unit == "B" else f"{size:.1f}{unit}"
        size /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


_COLUMNS = (
    "PID",
    "SLOT",
    "STATE",
    "REQUESTS",
    "ACTIVE",
    "CONNS",
    "WS",
    "RSS",
    "UPTIME",
    "OLDEST REQUEST",
)


def render(doc: Mapping[str, Any], width: int = 120) -> str:
    """The status document as a table for a terminal."""
    lines = []
    head = f"master pid {doc.get('pid', '?')}"
    if doc.get("stopping"):
        head += " (stopping)"
    lines.append(head)
    for group in doc.get("groups", []):
        restarts = group.get("restarts") or {}
        total = sum(restarts.values())
        why = ", ".join(f"{k} {v}" for k, v in sorted(restarts.items()))
        lines.append("")
        where = group.get("listen") or ("(queue)" if "queue" in group else "(main)")
        lines.append(
            f"{group['name']}  {group['state']}  {where}  "
            f"{group['ready']}/{group['expected']} ready  {group.get('requests', 0)} requests  "
            f"restarts {total}" + (f" ({why})" if why else "") + _steered(group)
        )
        rows = [_COLUMNS]
        for w in group.get("workers", []):
            state = w["state"]
            if state == "blocked":
                state = f"blocked {format_duration(w['blocked_for'])}"
            oldest = w.get("oldest_request")
            serving = "-"
            if oldest:
                serving = f"{oldest['method']} {oldest['path']} ({format_duration(oldest['age'])})"
            rows.append(
                (
                    str(w["pid"]),
                    str(w["slot"]),
                    state,
                    str(w["requests"]),
                    str(w["in_progress"]),
                    str(w["connections"]),
                    str(w.get("websockets", 0)),
                    format_bytes(w.get("rss_bytes")),
                    format_duration(w.get("uptime")),
                    serving,
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS) - 1)]
        for row in rows:
            text = "  " + "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:-1]))
            lines.append((text + "  " + row[-1])[:width].rstrip())
        queue = group.get("queue")
        if queue is not None:
            lines.append("  " + _queue_line(queue))
        for exit_line in group.get("last_exits", [])[-3:]:
            lines.append(f"  last exit: {exit_line}"[:width])
    return "\n".join(lines) + "\n"


def _steered(group: Mapping[str, Any]) -> str:
    """ ", new connections to slots 0, 2 only" while the master steers them away from a slot
    (its worker blocked, starting or stopping); "" when every slot takes them, or when the
    kernel chooses (a shared socket, no selector program)."""
    accepting = group.get("accepting")
    slots = set(range(int(group.get("expected") or 0)))  # a slot without a worker counts too
    if accepting is None or slots <= set(accepting):
        return ""
    if not accepting:  # the master lets the kernel spread them (steering.py)
        return ", new connections to any slot (none free)"
    names = ", ".join(str(slot) for slot in sorted(accepting))
    return f", new connections to slot{'s' if len(accepting) > 1 else ''} {names} only"


def _queue_line(queue: Mapping[str, Any]) -> str:
    """A queue-fed group's numbers, for the table."""
    if not queue.get("reachable"):
        return "queue: redis unreachable"
    return (
        f"queue: depth {queue['depth']}  oldest {format_duration(queue['oldest_age'])}  "
        f"in progress {queue['in_progress']}  completed {queue['completed']}  "
        f"failed {queue['failed']}  redelivered {queue['redelivered']}"
    )
