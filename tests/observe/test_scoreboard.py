"""Scoreboard: real forked writers, a real asyncio/uvloop heartbeat, a blocked loop."""

from __future__ import annotations

import asyncio
import os
import select
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
import uvloop

from aioworker.config import HttpSettings
from aioworker.http.counters import LATENCY_BUCKETS, ServerState
from aioworker.observe.scoreboard import (
    _HEADER_SIZE as _HEADER_SIZE_FOR_TEST,
)
from aioworker.observe.scoreboard import (
    _SLOT_SIZE as _SLOT_SIZE_FOR_TEST,
)
from aioworker.observe.scoreboard import (
    DRAINING,
    PATH_BYTES,
    READY,
    Scoreboard,
    ScoreboardFull,
    WorkerSample,
    start_heartbeat,
)
from tests.helpers.observe import fork, reap
from tests.helpers.wait import wait_until

pytestmark = pytest.mark.usefixtures("no_orphans")


@dataclass(eq=False)
class Cycle:
    method: str
    path: str
    started: float


@dataclass
class State:
    """The engine's ServerState contract: plain counters."""

    requests: int = 0
    in_progress: int = 0
    connections: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    status_classes: list[int] = field(default_factory=lambda: [0] * 6)
    latency_counts: list[int] = field(default_factory=lambda: [0] * 16)
    latency_sum: float = 0.0
    active: set[Cycle] = field(default_factory=set)
    websockets: int = 0
    ws_messages_in: int = 0
    ws_messages_out: int = 0


class Lines:
    """Lines from a child's pipe, read with a deadline (no sleeps)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buf = b""

    def next(self, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.fd], [], [], max(0.0, left))
            if not ready:
                raise AssertionError(f"no line within {timeout} s (have {self.buf!r})")
            chunk = os.read(self.fd, 4096)
            if not chunk:
                raise AssertionError(f"child closed the pipe (have {self.buf!r})")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line.decode()


@pytest.fixture
def board() -> Iterator[Scoreboard]:
    board = Scoreboard.create(8)
    yield board
    board.close()


def one(board: Scoreboard) -> WorkerSample:
    (sample,) = board.snapshot()
    return sample


def test_child_writes_parent_reads(board: Scoreboard) -> None:
    index = board.claim(1, "task", 3)
    assert one(board).state == "starting"
    assert one(board).pid == 0
    long_path = "/task/" + "é" * 300

    def child() -> None:
        state = State(requests=7, in_progress=2, connections=3, bytes_in=100, bytes_out=2000)
        state.status_classes[2] = 6
        state.status_classes[5] = 1
        state.latency_counts[:3] = [4, 2, 1]
        state.latency_sum = 0.0123
        state.websockets, state.ws_messages_in, state.ws_messages_out = 4, 50, 60
        state.active = {Cycle("POST", "/later", 20.0), Cycle("GET", long_path, 10.0)}
        writer = board.writer(index)
        writer.update(state)
        writer.set_state(READY)

    pid = fork(child)
    assert reap(pid) == 0
    sample = one(board)
    assert (sample.pid, sample.group_index, sample.group, sample.slot) == (pid, 1, "task", 3)
    assert sample.state == "ready"
    assert (sample.requests, sample.in_progress, sample.connections) == (7, 2, 3)
    assert (sample.bytes_in, sample.bytes_out) == (100, 2000)
    assert sample.status_classes == (0, 0, 6, 0, 0, 1)
    assert sample.latency_counts[:4] == (4, 2, 1, 0)
    assert len(sample.latency_counts) == len(board.buckets) + 1
    assert sample.latency_sum == 0.0123
    assert (sample.websockets, sample.ws_messages_in, sample.ws_messages_out) == (4, 50, 60)
    assert sample.oldest is not None
    assert sample.oldest.method == "GET"
    assert sample.oldest.started == 10.0
    # Cut to the fixed size on a character boundary: "é" is two bytes in UTF-8.
    assert long_path.startswith(sample.oldest.path)
    assert PATH_BYTES - 1 <= len(sample.oldest.path.encode()) <= PATH_BYTES
    assert sample.heartbeat_mono > 0


def test_claim_release_and_capacity() -> None:
    board = Scoreboard.create(2)
    first = board.claim(0, "web", 0)
    second = board.claim(0, "web", 1)
    with pytest.raises(ScoreboardFull):
        board.claim(0, "web", 2)
    last = board.release(first)
    assert last is not None
    assert last.slot == 0
    assert [s.index for s in board.snapshot()] == [second]
    # A released slot starts clean for the next process.
    again = board.claim(1, "task", 0)
    assert again == first
    sample = board.read(again)
    assert sample is not None
    assert (sample.group, sample.requests, sample.heartbeat_mono) == ("task", 0, 0.0)
    board.close()


def test_the_board_counts_in_the_engines_latency_buckets() -> None:
    # One bucket list: the engine counts into LATENCY_BUCKETS and the board publishes them.
    board = Scoreboard.create(1)
    assert board.buckets == LATENCY_BUCKETS
    assert len(ServerState().latency_counts) == len(board.buckets) + 1
    # The last finite bound is the default request deadline: timed-out requests stand apart.
    assert board.buckets[-1] == HttpSettings().request_timeout
    board.close()


def test_bad_buckets_rejected() -> None:
    with pytest.raises(ValueError, match="increasing"):
        Scoreboard.create(1, buckets=(1.0, 0.5))
    with pytest.raises(ValueError, match="capacity"):
        Scoreboard.create(0)


def test_reads_are_never_torn(board: Scoreboard) -> None:
    """A child rewrites its slot as fast as it can; every read must be one whole update."""
    index = board.claim(0, "web", 0)
    rounds = 20_000

    def child() -> None:
        state = State()
        writer = board.writer(index)
        for n in range(1, rounds + 1):
            state.requests = n
            state.bytes_in = n * 10
            state.status_classes[2] = n
            state.latency_counts[0] = n
            writer.update(state)

    pid = fork(child)
    reads = 0
    while True:
        sample = board.read(index)
        assert sample is not None
        n = sample.requests
        assert (sample.bytes_in, sample.status_classes[2], sample.latency_counts[0]) == (
            n * 10,
            n,
            n,
        )
        reads += 1
        if n == rounds:
            break
    assert reap(pid) == 0
    assert reads > 1


LOOPS = [
    pytest.param(asyncio.new_event_loop, id="asyncio"),
    pytest.param(uvloop.new_event_loop, id="uvloop"),
]


@pytest.mark.parametrize("new_loop", LOOPS)
def test_heartbeat_beats_and_stops_while_blocked(
    board: Scoreboard, new_loop: Callable[[], asyncio.AbstractEventLoop]
) -> None:
    index = board.claim(0, "web", 0)
    to_child_r, to_child_w = os.pipe()
    from_child_r, from_child_w = os.pipe()
    release_r, release_w = os.pipe()  # not on the loop: uvloop makes its readers non-blocking
    block_for = 0.3

    def child() -> None:
        loop = new_loop()
        state = State(requests=1)
        writer = board.writer(index)
        beat = start_heartbeat(loop, writer, state, interval=0.02)
        writer.set_state(READY)

        def on_command() -> None:
            command = os.read(to_child_r, 1)
            if command == b"b":
                state.requests = 2
                os.write(from_child_w, b"BLOCKING %r\n" % time.monotonic())
                os.read(release_r, 1)  # the loop is blocked until the parent says so
                os.write(from_child_w, b"UNBLOCKED %r\n" % time.monotonic())
            else:
                writer.set_state(DRAINING)
                beat.cancel()
                loop.stop()

        loop.add_reader(to_child_r, on_command)
        os.write(from_child_w, b"READY\n")
        loop.run_forever()
        loop.close()

    pid = fork(child)
    lines = Lines(from_child_r)
    assert lines.next() == "READY"
    # It beats: several distinct heartbeats show up.
    seen: set[float] = set()

    def beating() -> bool:
        seen.add(one(board).heartbeat_mono)
        return len(seen) >= 4

    wait_until(beating, 10.0, "4 distinct heartbeats")
    assert one(board).state == "ready"

    os.write(to_child_w, b"b")
    blocking_at = float(lines.next().split()[1])

    def stale() -> bool:
        age = one(board).heartbeat_age(time.monotonic())
        return age is not None and age >= block_for

    # No beat while blocked: the heartbeat ages, and the last one predates the block.
    wait_until(stale, 10.0, "the heartbeat to age past the block")
    frozen = one(board)
    assert frozen.heartbeat_mono <= blocking_at
    assert frozen.requests == 1
    os.write(release_w, b"u")
    unblocked_at = float(lines.next().split()[1])
    # Unblocked, it beats again and copies the new counters.
    wait_until(lambda: one(board).heartbeat_mono > unblocked_at, 10.0, "a beat after the block")
    assert one(board).requests == 2

    os.write(to_child_w, b"s")
    assert reap(pid) == 0
    assert one(board).state == "draining"
    for fd in (to_child_r, to_child_w, from_child_r, from_child_w, release_r, release_w):
        os.close(fd)


def test_released_slot_after_kill(board: Scoreboard) -> None:
    """A worker killed mid-life leaves its last counters for the master's log."""
    index = board.claim(0, "web", 0)
    r, w = os.pipe()

    def child() -> None:
        writer = board.writer(index)
        writer.update(State(requests=41))
        os.write(w, b"WROTE\n")
        time.sleep(60)

    pid = fork(child)
    assert Lines(r).next() == "WROTE"
    os.kill(pid, signal.SIGKILL)
    status = reap(pid)
    assert os.WIFSIGNALED(status)
    last = board.release(index)
    assert last is not None
    assert (last.pid, last.requests) == (pid, 41)
    assert board.snapshot() == []
    os.close(r)
    os.close(w)


def test_refresh_inside_a_write_is_skipped(board: Scoreboard) -> None:
    """A signal handler's refresh that interrupts the timer's write must not nest into it."""
    index = board.claim(0, "web", 0)
    writer = board.writer(index)
    offset = _HEADER_SIZE_FOR_TEST + index * _SLOT_SIZE_FOR_TEST

    def seq() -> int:
        return int.from_bytes(board._buf[offset : offset + 8], "little")

    class Interrupting(State):
        @property
        def requests(self) -> int:
            writer.update(beat=False)  # what the signal handler would do right here
            return 5

        @requests.setter
        def requests(self, value: int) -> None:
            pass

    before = seq()
    writer.update(Interrupting())
    assert seq() == before + 2  # one write (odd, then even), the nested one skipped
    sample = board.read(index)
    assert sample is not None
    assert sample.requests == 5


def test_a_writer_that_died_mid_write_does_not_hang_readers(board: Scoreboard) -> None:
    """A counter left odd (the writer killed between its two counter writes) still reads."""
    index = board.claim(0, "web", 0)
    state = State()
    state.requests = 7
    board.writer(index).update(state)
    offset = _HEADER_SIZE_FOR_TEST + index * _SLOT_SIZE_FOR_TEST
    seq = int.from_bytes(board._buf[offset : offset + 8], "little")
    board._buf[offset : offset + 8] = (seq + 1).to_bytes(8, "little")  # what the dead leave
    sample = board.read(index)
    assert sample is not None
    assert sample.requests == 7
