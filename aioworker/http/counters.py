"""Per-worker counters the engine keeps in plain attributes; readers copy them out periodically.

Every request is counted here and only here: `request_started` and `request_ended` for the
requests the app answers, `count_response` for the ones the server answers by itself. The
engine only does integer arithmetic here on the request path. Anything that publishes
these numbers (the shared-memory scoreboard, logs) reads them from a timer, so serving a
request never costs a syscall or a lock for the sake of observability.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Final, Protocol

__all__ = ["LATENCY_BUCKETS", "ActiveRequest", "ServerState"]


class ActiveRequest(Protocol):
    """A request in progress as the counters keep it (a `cycle.ActiveRequest`), and as the
    scoreboard reads it: the oldest one is shown in status."""

    @property
    def method(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def started(self) -> float: ...


# Upper bounds in seconds of the latency histogram buckets; a last bucket counts the rest (+Inf).
# The one definition: the scoreboard and /metrics publish these. It ends at 60 s, the default
# request_timeout (to the response head), so requests cut by that deadline are told apart from
# slower ones; streams that outlive it land in +Inf.
LATENCY_BUCKETS: Final[tuple[float, ...]] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)


class ServerState:
    """Counters for one server (one worker)."""

    __slots__ = (
        "active",
        "bytes_in",
        "bytes_out",
        "connections",
        "in_progress",
        "latency_counts",
        "latency_sum",
        "requests",
        "status_classes",
        "websockets",
        "ws_messages_in",
        "ws_messages_out",
    )

    def __init__(self) -> None:
        self.requests = 0
        self.in_progress = 0
        self.connections = 0
        self.bytes_in = 0
        self.bytes_out = 0
        # index status // 100: [unused, 1xx, 2xx, 3xx, 4xx, 5xx]
        self.status_classes = [0] * 6
        self.latency_counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.latency_sum = 0.0  # seconds, over the requests latency_counts counts
        # requests whose response is not complete; each has .method, .path and .started
        # (time.monotonic() seconds).
        self.active: set[ActiveRequest] = set()
        # Open WebSockets (accepted, not yet closed) and the messages they carried. A WebSocket
        # handshake is also one request above: max_requests counts it once.
        self.websockets = 0
        self.ws_messages_in = 0
        self.ws_messages_out = 0

    def request_started(self, cycle: ActiveRequest) -> None:
        self.in_progress += 1
        self.active.add(cycle)

    def request_ended(self, cycle: ActiveRequest, status: int | None, elapsed: float) -> bool:
        """Count a request once it ends, answered (`status`) or not (None); False if counted."""
        try:
            self.active.remove(cycle)
        except KeyError:  # already counted: a cycle ends once but can be told so twice
            return False
        self.in_progress -= 1
        if status is not None:
            # count_response's two lines, inline: this runs for every request.
            self.requests += 1
            self.status_classes[status // 100 if status < 600 else 0] += 1
            self.latency_counts[bisect_left(LATENCY_BUCKETS, elapsed)] += 1
            self.latency_sum += elapsed
        return True

    def count_response(self, status: int) -> None:
        """Count a response the server gave by itself, without the app (no latency to add)."""
        self.requests += 1
        self.status_classes[status // 100 if status < 600 else 0] += 1
