"""Scoreboard: shared memory with one fixed-size slot per worker process.

The master creates it before the first fork (an anonymous ``MAP_SHARED`` mapping, inherited by
every child), claims a slot for each process it spawns and releases it after the reap. A worker
writes only its own slot, from a timer on its event loop (``start_heartbeat``) that copies the
engine's plain counters (``ServerState``) and stamps the loop heartbeat: there is no per-request
work, and a blocked loop stops the heartbeat, which is how the watchdog sees it.

Why anonymous memory and no file under /dev/shm: the CLI asks the master over the control socket,
a file would show request paths to anyone allowed to read it, and it would outlive a crashed
master. Slots are indexed by process, not by worker slot number: during a rolling reload the old
and the new worker of one slot run side by side.

Consistency: each slot starts with a sequence counter (a seqlock). The writer makes it odd,
packs the body, makes it even; a reader retries while it is odd or changed. Python gives no
memory barriers, so on weakly ordered CPUs a read may still mix two updates; that costs one
snapshot a slightly stale integer, never a crash, and the next snapshot is right.
"""

from __future__ import annotations

import mmap
import os
import struct
import time
from asyncio import AbstractEventLoop, TimerHandle
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from aioworker.http.counters import LATENCY_BUCKETS, ActiveRequest

__all__ = [
    "BUSY_AFTER",
    "DRAINING",
    "EMPTY",
    "HEARTBEAT_INTERVAL",
    "MAX_BUCKETS",
    "READY",
    "STARTING",
    "STATE_NAMES",
    "Heartbeat",
    "OldestRequest",
    "Scoreboard",
    "ScoreboardFull",
    "SlotWriter",
    "WorkerSample",
    "start_heartbeat",
]

EMPTY, STARTING, READY, DRAINING = 0, 1, 2, 3
STATE_NAMES = {EMPTY: "empty", STARTING: "starting", READY: "ready", DRAINING: "draining"}

# Seconds between beats: 20 struct packs a second, nothing per request. Three missed beats
# (BUSY_AFTER) take a worker out of the new-connection rotation.
HEARTBEAT_INTERVAL = 0.05
BUSY_AFTER = 0.15
MAX_BUCKETS = 31  # finite bounds a board can hold; +1 counter for +Inf
METHOD_BYTES = 16
PATH_BYTES = 200  # the oldest request's path (no query: the engine keeps none) is cut to this
GROUP_BYTES = 32

_MAGIC = b"AIOWSB04"
_HEADER = struct.Struct(f"<8sIII4x{MAX_BUCKETS}d")
_HEADER_SIZE = 320
_SEQ = struct.Struct("<Q")
_BODY = struct.Struct(
    f"<iHHB3x{GROUP_BYTES}s"  # pid, group index, worker slot, state, group name
    "3d"  # started wall, started mono, heartbeat mono
    "QIIQQ"  # requests, in progress, connections, bytes in, bytes out
    f"6Q{MAX_BUCKETS + 1}Qd"  # status classes (index status // 100), latency counts and sum
    "IQQ"  # open WebSockets, WebSocket messages in, out
    f"{METHOD_BYTES}s{PATH_BYTES}sd"  # oldest request in progress: method, path, started mono
)
# Indices of the body's fields.
_STATE, _STARTED, _HEARTBEAT, _COUNTERS, _CLASSES = 3, 5, 7, 8, 13
_LATENCY = _CLASSES + 6
_SUM = _LATENCY + MAX_BUCKETS + 1
_WS = _SUM + 1
# Slots are 64-byte aligned so the 8-byte sequence counter never straddles a cache line.
_SLOT_SIZE = (_SEQ.size + _BODY.size + 63) // 64 * 64
# A read retries while a live writer keeps the counter moving (a heartbeat writes 20 times a
# second, so this matters only under a stress test: 300 tries were once not enough for
# test_reads_are_never_torn on a loaded machine), and stops after this many tries on a counter
# that stays odd and unchanged (about 10 ms: a writer that died mid-write).
_READ_ATTEMPTS = 5000
_STUCK_ATTEMPTS = 200
assert _HEADER.size <= _HEADER_SIZE


class ScoreboardFull(RuntimeError):
    """Every slot is in use: the process runs unobserved (raise the capacity)."""


class StateLike(Protocol):
    """The engine's ``ServerState`` as the scoreboard sees it: plain counters."""

    @property
    def requests(self) -> int: ...
    @property
    def in_progress(self) -> int: ...
    @property
    def connections(self) -> int: ...
    @property
    def bytes_in(self) -> int: ...
    @property
    def bytes_out(self) -> int: ...
    @property
    def status_classes(self) -> Sequence[int]: ...
    @property
    def latency_counts(self) -> Sequence[int]: ...
    @property
    def latency_sum(self) -> float: ...
    @property
    def active(self) -> Collection[ActiveRequest]: ...
    @property
    def websockets(self) -> int: ...
    @property
    def ws_messages_in(self) -> int: ...
    @property
    def ws_messages_out(self) -> int: ...


@dataclass(frozen=True, slots=True)
class OldestRequest:
    """The request in progress that started first, as last written by its worker."""

    method: str
    path: str
    started: float  # time.monotonic() of the worker (CLOCK_MONOTONIC is system-wide)


@dataclass(frozen=True, slots=True)
class WorkerSample:
    """One slot as read at one moment: plain data for status, metrics and the watchdog."""

    index: int
    pid: int
    group_index: int
    group: str
    slot: int
    state: str
    started_wall: float
    started_mono: float
    heartbeat_mono: float  # 0.0 until the worker's loop has beaten once
    requests: int
    in_progress: int
    connections: int
    bytes_in: int
    bytes_out: int
    status_classes: tuple[int, ...]
    latency_counts: tuple[int, ...]
    latency_sum: float  # seconds, over the requests latency_counts counts
    oldest: OldestRequest | None
    websockets: int = 0  # open WebSockets
    ws_messages_in: int = 0
    ws_messages_out: int = 0

    def heartbeat_age(self, now: float) -> float | None:
        """Seconds since the loop last beat (monotonic `now`), None before the first beat."""
        return max(0.0, now - self.heartbeat_mono) if self.heartbeat_mono else None


class Scoreboard:
    """The shared mapping: the master claims and releases slots, workers write, all read."""

    def __init__(self, buf: mmap.mmap) -> None:
        magic, capacity, slot_size, nbuckets, *bounds = _HEADER.unpack_from(buf, 0)
        if magic != _MAGIC or slot_size != _SLOT_SIZE:
            raise ValueError("not a scoreboard of this version")
        self._buf = buf
        self.capacity: int = capacity
        self.buckets: tuple[float, ...] = tuple(bounds[:nbuckets])
        self._free = [i for i in range(capacity - 1, -1, -1) if self._state(i) == EMPTY]

    @classmethod
    def create(cls, capacity: int, buckets: Sequence[float] = LATENCY_BUCKETS) -> Scoreboard:
        """Map zeroed shared memory for `capacity` processes; call before the first fork."""
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        if len(buckets) > MAX_BUCKETS or list(buckets) != sorted(buckets):
            raise ValueError(f"at most {MAX_BUCKETS} increasing latency bounds")
        size = _HEADER_SIZE + capacity * _SLOT_SIZE
        buf = mmap.mmap(-1, size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_WRITE)
        padded = [*buckets, *[0.0] * (MAX_BUCKETS - len(buckets))]
        _HEADER.pack_into(buf, 0, _MAGIC, capacity, _SLOT_SIZE, len(buckets), *padded)
        return cls(buf)

    def close(self) -> None:
        self._buf.close()

    # ------------------------------------------------------------------ master side

    def claim(self, group_index: int, group: str, slot: int) -> int:
        """Reserve and reset a slot for a process about to be forked; return its index.

        Call in the master before fork and hand the index to the child. Raises ScoreboardFull.
        """
        if not self._free:
            raise ScoreboardFull(f"all {self.capacity} scoreboard slots are in use")
        index = self._free.pop()
        name = group.encode()[:GROUP_BYTES]
        body = _empty_body()
        body[0:5] = [0, group_index, slot, STARTING, name]
        body[_STARTED : _STARTED + 2] = time.time(), time.monotonic()
        self._write(index, body)
        return index

    def release(self, index: int) -> WorkerSample | None:
        """Free a slot after its process was reaped; return its last sample."""
        sample = self.read(index)
        self._write(index, _empty_body())
        if index not in self._free:
            self._free.append(index)
        return sample

    def _write(self, index: int, body: list[object]) -> None:
        offset = _HEADER_SIZE + index * _SLOT_SIZE
        (seq,) = _SEQ.unpack_from(self._buf, offset)
        seq = (seq | 1) + 1  # even, past anything a dead writer left behind
        _SEQ.pack_into(self._buf, offset, seq - 1)
        _BODY.pack_into(self._buf, offset + _SEQ.size, *body)
        _SEQ.pack_into(self._buf, offset, seq)

    # ------------------------------------------------------------------ reading

    def _state(self, index: int) -> int:
        return self._buf[_HEADER_SIZE + index * _SLOT_SIZE + _SEQ.size + 8]

    def read(self, index: int) -> WorkerSample | None:
        """A consistent copy of one slot, or None when it is empty."""
        offset = _HEADER_SIZE + index * _SLOT_SIZE
        buf = self._buf
        start, end = offset + _SEQ.size, offset + _SEQ.size + _BODY.size
        raw = b""
        last, stuck = -1, 0
        # Copy the raw bytes between the two counter reads (one memcpy, well under a
        # microsecond) and unpack outside: the window a write can hit stays tiny.
        for attempt in range(_READ_ATTEMPTS):
            (before,) = _SEQ.unpack_from(buf, offset)
            raw = buf[start:end]
            (after,) = _SEQ.unpack_from(buf, offset)
            if before == after and not before & 1:
                break
            # A counter that stays odd and unchanged means a writer killed or stopped mid-write
            # (it stays so until the master releases the slot): take the last copy. One that
            # keeps moving is a live writer; keep trying, a clean window comes.
            stuck = stuck + 1 if after == last else 0
            last = after
            if stuck >= _STUCK_ATTEMPTS:
                break
            if attempt >= 100:
                # The writer was preempted mid-write (both on one busy core): let it run.
                # Measured in test_reads_are_never_torn; 100 spins alone were not enough.
                time.sleep(0.00005)
        fields: tuple[Any, ...] = _BODY.unpack(raw)
        return _sample(index, fields, len(self.buckets) + 1)

    def snapshot(self) -> list[WorkerSample]:
        """Every occupied slot, in index order."""
        samples = []
        for index in range(self.capacity):
            if self._state(index) != EMPTY:
                sample = self.read(index)
                if sample is not None:
                    samples.append(sample)
        return samples

    def writer(self, index: int) -> SlotWriter:
        """The child's writer for the slot the master claimed for it."""
        return SlotWriter(self, index)


def _empty_body() -> list[object]:
    return [0, 0, 0, EMPTY, b"", *[0.0] * 3, *[0] * 5, *[0] * 6, *[0] * (MAX_BUCKETS + 1),
            0.0, 0, 0, 0, b"", b"", 0.0]  # fmt: skip


def _sample(index: int, f: tuple[Any, ...], nlatency: int) -> WorkerSample | None:
    if f[_STATE] == EMPTY:
        return None
    method, path, oldest_started = f[-3], f[-2], f[-1]
    oldest = None
    if oldest_started:
        oldest = OldestRequest(
            method.rstrip(b"\0").decode("latin-1"),
            path.rstrip(b"\0").decode("utf-8", "replace"),
            oldest_started,
        )
    return WorkerSample(
        index=index,
        pid=f[0],
        group_index=f[1],
        slot=f[2],
        state=STATE_NAMES.get(f[_STATE], "unknown"),
        group=f[4].rstrip(b"\0").decode("utf-8", "replace"),
        started_wall=f[_STARTED],
        started_mono=f[_STARTED + 1],
        heartbeat_mono=f[_HEARTBEAT],
        requests=f[_COUNTERS],
        in_progress=f[_COUNTERS + 1],
        connections=f[_COUNTERS + 2],
        bytes_in=f[_COUNTERS + 3],
        bytes_out=f[_COUNTERS + 4],
        status_classes=tuple(f[_CLASSES:_LATENCY]),
        latency_counts=tuple(f[_LATENCY : _LATENCY + nlatency]),
        latency_sum=f[_SUM],
        oldest=oldest,
        websockets=f[_WS],
        ws_messages_in=f[_WS + 1],
        ws_messages_out=f[_WS + 2],
    )


class SlotWriter:
    """A worker's view of its own slot: copies counters in, never reads other slots."""

    __slots__ = ("_body", "_buf", "_offset", "_seq", "_writing", "state")

    def __init__(self, board: Scoreboard, index: int) -> None:
        self._buf = board._buf
        self._offset = _HEADER_SIZE + index * _SLOT_SIZE
        (seq,) = _SEQ.unpack_from(self._buf, self._offset)
        self._seq: int = (seq | 1) + 1
        self._body = list(_BODY.unpack_from(self._buf, self._offset + _SEQ.size))
        self._body[0] = os.getpid()
        self._writing = False
        self.state: StateLike | None = None
        self._flush()

    def set_state(self, state: int) -> None:
        """Mark READY once accepting, DRAINING once told to stop; written at once."""
        self._body[_STATE] = state
        self.update(beat=False)

    def update(self, state: StateLike | None = None, *, beat: bool = True) -> None:
        """Copy the engine's counters (and, with `beat`, the heartbeat) into the slot.

        Called by the heartbeat timer; also safe from a signal handler that interrupted a
        write (that nested call is skipped). `state` defaults to the last one given.
        """
        if self._writing:
            return
        self._writing = True
        try:
            if state is not None:
                self.state = state
            body = self._body
            if beat:
                body[_HEARTBEAT] = time.monotonic()
            s = self.state
            if s is not None:
                body[_COUNTERS : _COUNTERS + 5] = (
                    s.requests, s.in_progress, s.connections, s.bytes_in, s.bytes_out
                )  # fmt: skip
                classes = s.status_classes
                n = min(len(classes), 6)
                body[_CLASSES : _CLASSES + n] = classes[:n]
                latency = s.latency_counts
                n = min(len(latency), MAX_BUCKETS + 1)
                body[_LATENCY : _LATENCY + n] = latency[:n]
                body[_SUM] = s.latency_sum
                body[_WS : _WS + 3] = s.websockets, s.ws_messages_in, s.ws_messages_out
                oldest = min(s.active, key=_started, default=None)
                if oldest is None:
                    body[-3:] = b"", b"", 0.0
                else:
                    body[-3:] = (
                        oldest.method.encode("latin-1", "replace")[:METHOD_BYTES],
                        _cut(oldest.path),
                        oldest.started,
                    )
            self._flush()
        finally:
            self._writing = False

    def _flush(self) -> None:
        seq = self._seq + 1
        _SEQ.pack_into(self._buf, self._offset, seq)
        _BODY.pack_into(self._buf, self._offset + _SEQ.size, *self._body)
        self._seq = seq + 1
        _SEQ.pack_into(self._buf, self._offset, self._seq)


def _started(request: ActiveRequest) -> float:
    return request.started


def _cut(path: str) -> bytes:
    """The path as UTF-8, cut to PATH_BYTES without splitting a character."""
    raw = path.encode("utf-8", "replace")
    if len(raw) <= PATH_BYTES:
        return raw
    return raw[:PATH_BYTES].decode("utf-8", "ignore").encode()


class Heartbeat:
    """The periodic timer that writes a worker's slot; `cancel()` stops it."""

    __slots__ = ("_handle", "_interval", "_loop", "_writer")

    def __init__(self, loop: AbstractEventLoop, writer: SlotWriter, interval: float) -> None:
        self._loop = loop
        self._writer = writer
        self._interval = interval
        self._handle: TimerHandle | None = None

    def _tick(self) -> None:
        self._writer.update()
        self._handle = self._loop.call_later(self._interval, self._tick)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


def start_heartbeat(
    loop: AbstractEventLoop,
    writer: SlotWriter,
    state: StateLike | None = None,
    interval: float = HEARTBEAT_INTERVAL,
) -> Heartbeat:
    """Beat now and then every `interval` seconds on `loop` (a blocked loop stops beating).

    Each beat copies `state` into the slot: at 10 beats a second that is one struct pack of
    ~60 integers and a min() over the requests in progress, and nothing per request.
    """
    if interval <= 0:
        raise ValueError("interval must be positive")
    if state is not None:
        writer.state = state
    heartbeat = Heartbeat(loop, writer, interval)
    heartbeat._tick()
    return heartbeat
