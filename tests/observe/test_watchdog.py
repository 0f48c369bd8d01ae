"""Watchdog: decisions from plain data; a real stack dump from a forked, blocked process."""

from __future__ import annotations

import os
import select
import signal
import time
from collections.abc import Callable
from typing import Any

import pytest
import uvloop

from aioworker.observe.scoreboard import (
    READY,
    OldestRequest,
    Scoreboard,
    WorkerSample,
    start_heartbeat,
)
from aioworker.observe.watchdog import (
    KILL,
    RECYCLE,
    REFRESH,
    REFRESH_SIGNAL,
    REFRESH_WAIT,
    STACK,
    STACK_SIGNAL,
    Action,
    Limits,
    Watchdog,
    install_stack_dump,
    read_rss,
)
from tests.helpers import observe as observe_helpers
from tests.helpers.observe import fork
from tests.helpers.wait import wait_until

MIB = 1024 * 1024

pytestmark = pytest.mark.usefixtures("no_orphans")


def sample(pid: int = 100, heartbeat: float = 1000.0, **changes: Any) -> WorkerSample:
    """A worker busy with one request, whose loop last beat at `heartbeat`."""
    busy = {
        "started_mono": 900.0,
        "heartbeat_mono": heartbeat,
        "in_progress": 1,
        "connections": 1,
        "oldest": OldestRequest("GET", "/task/sleep?seconds=60", heartbeat - 0.01),
    }
    return observe_helpers.sample(pid, **{**busy, **changes})


def kinds(actions: list[Action]) -> list[str]:
    return [a.kind for a in actions]


LIMITS = {"web": Limits(timeout=10.0, soft_timeout=3.0)}


@pytest.mark.parametrize(
    ("ages", "expected"),
    [
        pytest.param([0.0, 0.5, 0.9], [[], [], []], id="healthy"),
        pytest.param([1.0, 1.5], [[REFRESH], []], id="blocked-refresh-once"),
        pytest.param([1.0, 3.0, 4.0], [[REFRESH], [STACK], []], id="soft-stack-once"),
        pytest.param(
            [1.0, 3.0, 10.0, 10.5, 11.0, 12.0],
            [[REFRESH], [STACK], [STACK], [], [KILL], []],
            id="hard-stack-then-kill-after-grace",
        ),
        pytest.param(
            [10.0, 10.5, 11.0, 11.5], [[REFRESH], [STACK], [], [KILL]], id="first-seen-past-timeout"
        ),
    ],
)
def test_blocked_sequence(ages: list[float], expected: list[list[str]]) -> None:
    dog = Watchdog(blocked_after=1.0, kill_grace=1.0)
    s = sample()
    got = [kinds(dog.check([s], LIMITS, s.heartbeat_mono + age)) for age in ages]
    assert got == expected


def test_stack_waits_for_the_refresh_to_reach_the_slot() -> None:
    """The log line names the request in progress: until the refreshed slot shows it (or
    REFRESH_WAIT passed), the stack waits."""
    dog = Watchdog(blocked_after=1.0)
    unrefreshed = sample(oldest=None)
    at = unrefreshed.heartbeat_mono + 3.0
    assert kinds(dog.check([unrefreshed], LIMITS, at)) == [REFRESH]
    assert kinds(dog.check([unrefreshed], LIMITS, at + 0.1)) == []
    assert kinds(dog.check([sample()], LIMITS, at + 0.2)) == [STACK]
    other = Watchdog(blocked_after=1.0)
    assert kinds(other.check([unrefreshed], LIMITS, at)) == [REFRESH]
    assert kinds(other.check([unrefreshed], LIMITS, at + REFRESH_WAIT)) == [STACK]


def test_new_block_is_a_new_episode() -> None:
    dog = Watchdog()
    first = sample(heartbeat=1000.0)
    assert kinds(dog.check([first], LIMITS, 1004.0)) == [REFRESH]
    assert kinds(dog.check([first], LIMITS, 1004.5)) == [STACK]
    # The loop came back and beat, then blocked again: act again.
    second = sample(heartbeat=1010.0)
    assert kinds(dog.check([second], LIMITS, 1010.5)) == []
    assert kinds(dog.check([second], LIMITS, 1014.0)) == [REFRESH]
    assert kinds(dog.check([second], LIMITS, 1014.5)) == [STACK]


@pytest.mark.parametrize(
    ("limits", "age", "expected"),
    [
        pytest.param(Limits(timeout=0.0, soft_timeout=0.0), 500.0, [REFRESH], id="both-off"),
        pytest.param(Limits(timeout=0.0, soft_timeout=2.0), 500.0, [REFRESH, STACK], id="soft"),
        pytest.param(Limits(timeout=0.5, soft_timeout=0.0), 0.6, [REFRESH, STACK], id="short"),
        pytest.param(Limits(timeout=5.0, soft_timeout=0.0), 4.9, [REFRESH], id="under"),
    ],
)
def test_limits(limits: Limits, age: float, expected: list[str]) -> None:
    """Two checks 0.1 s apart: the refresh first, then what the limits call for."""
    dog = Watchdog(blocked_after=1.0)
    s = sample()
    now = s.heartbeat_mono + age
    got = kinds(dog.check([s], {"web": limits}, now)) + kinds(dog.check([s], {"web": limits}, now))
    assert got == expected


def test_stack_waits_for_the_refreshed_snapshot() -> None:
    """The refresh goes out first; the log line comes from a snapshot that names the request."""
    dog = Watchdog(blocked_after=1.0)
    stale = sample(oldest=None)
    (refresh,) = dog.check([stale], LIMITS, 1004.0)
    assert refresh.kind == REFRESH
    refreshed = sample()  # the worker wrote its request in progress
    (stack,) = dog.check([refreshed], LIMITS, 1004.2)
    assert stack.kind == STACK
    assert "serving GET /task/sleep?seconds=60" in stack.message


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        pytest.param({"heartbeat_mono": 0.0}, [], id="never-beat"),
        pytest.param({"pid": 0}, [], id="not-forked-yet"),
        pytest.param({"state": "draining"}, [REFRESH], id="draining-still-watched"),
    ],
)
def test_which_workers_are_watched(changes: dict[str, Any], expected: list[str]) -> None:
    s = sample(**changes)
    assert kinds(Watchdog().check([s], LIMITS, 1000.0 + 10.0)) == expected


def test_messages_name_worker_request_and_reason() -> None:
    dog = Watchdog(kill_grace=0.5)
    s = sample(pid=4242, slot=3, group="web")
    dog.check([s], LIMITS, 1009.5)
    dog.check([s], LIMITS, 1010.0)
    (kill,) = dog.check([s], LIMITS, 1010.5)
    assert kill.kind == KILL
    assert kill.reason == "timeout"
    assert kill.message.startswith("worker 4242 (web[3]) killed, event loop blocked for 10.5 s")
    assert "GET /task/sleep?seconds=60" in kill.message
    assert "10.5 s" in kill.message


def test_memory_recycles_after_consecutive_samples() -> None:
    dog = Watchdog(rss_samples=3)
    limits = {"web": Limits(max_rss_mb=100)}
    s = sample(heartbeat=0.0)  # no heartbeat: only memory is judged
    over, under = {100: 101 * MIB}, {100: 99 * MIB}
    assert dog.check([s], limits, 1.0, over) == []
    assert dog.check([s], limits, 2.0, over) == []
    assert dog.check([s], limits, 3.0, under) == []  # not consecutive: starts over
    assert dog.check([s], limits, 4.0, over) == []
    assert dog.check([s], limits, 5.0) == []  # no new sample: nothing counted
    assert dog.check([s], limits, 6.0, over) == []
    (action,) = dog.check([s], limits, 7.0, over)
    assert (action.kind, action.reason) == (RECYCLE, "memory")
    assert (
        action.message
        == "worker 100 (web[0]) recycled, uses 101 MiB, above max_rss_mb 100 for 3 samples"
    )
    # Once only: the master is already replacing it.
    assert dog.check([s], limits, 8.0, over) == []


@pytest.mark.parametrize(
    ("changes", "max_rss_mb"),
    [
        pytest.param({"state": "starting"}, 100, id="starting"),
        pytest.param({"state": "draining"}, 100, id="draining"),
        pytest.param({}, 0, id="no-limit"),
    ],
)
def test_memory_ignored(changes: dict[str, Any], max_rss_mb: int) -> None:
    dog = Watchdog(rss_samples=1)
    s = sample(heartbeat=0.0, **changes)
    assert dog.check([s], {"web": Limits(max_rss_mb=max_rss_mb)}, 1.0, {100: 10**10}) == []


def test_forgets_gone_workers() -> None:
    dog = Watchdog()
    s = sample()
    dog.check([s], LIMITS, 1004.0)
    dog.check([], LIMITS, 1005.0)
    # The same pid seen again (reused) starts clean.
    assert kinds(dog.check([s], LIMITS, 1004.0)) == [REFRESH]


def test_read_rss() -> None:
    rss = read_rss(os.getpid())
    assert rss is not None
    assert 5 * MIB < rss < 4096 * MIB
    assert read_rss(2**22 + 12345) is None


# ------------------------------------------------------------------ real processes


def read_until(fd: int, needle: bytes, timeout: float = 10.0) -> bytes:
    deadline = time.monotonic() + timeout
    data = b""
    while needle not in data:
        left = deadline - time.monotonic()
        ready, _, _ = select.select([fd], [], [], max(0.0, left))
        if not ready:
            raise AssertionError(f"{needle!r} not seen within {timeout} s; got {data!r}")
        chunk = os.read(fd, 65536)
        if not chunk:
            raise AssertionError(f"pipe closed before {needle!r}; got {data!r}")
        data += chunk
    return data


class Cycle:
    def __init__(self, method: str, path: str, started: float) -> None:
        self.method, self.path, self.started = method, path, started


class State:
    def __init__(self) -> None:
        self.requests = self.in_progress = self.connections = self.bytes_in = self.bytes_out = 0
        self.status_classes = [0] * 6
        self.latency_counts = [0] * 15
        self.latency_sum = 0.0
        self.active: set[Cycle] = set()
        self.websockets = self.ws_messages_in = self.ws_messages_out = 0


def distinctive_blocking_handler_x7(state: State) -> None:
    """Stands for an app's route that blocks the loop."""
    state.active.add(Cycle("GET", "/task/sleep?seconds=60", time.monotonic()))
    state.in_progress = 1
    os.write(1, b"BLOCKING\n")
    time.sleep(60)


def blocked_worker(board: Scoreboard, index: int, log_w: int, out_w: int) -> Callable[[], None]:
    """A worker on uvloop whose handler blocks the loop in time.sleep."""

    def child() -> None:
        os.dup2(out_w, 1)
        loop = uvloop.new_event_loop()
        state = State()
        writer = board.writer(index)
        install_stack_dump(log_w, refresh=lambda: writer.update(beat=False))
        start_heartbeat(loop, writer, state, interval=0.02)
        writer.set_state(READY)
        loop.call_later(0.1, distinctive_blocking_handler_x7, state)
        loop.run_forever()

    return child


def start_blocked_worker() -> tuple[Scoreboard, int, int, tuple[int, int, int, int]]:
    """A forked uvloop worker blocked in its handler: (board, slot index, pid, its 4 pipe fds)."""
    board = Scoreboard.create(2)
    index = board.claim(0, "task", 0)
    log_r, log_w = os.pipe()
    out_r, out_w = os.pipe()
    pid = fork(blocked_worker(board, index, log_w, out_w))
    read_until(out_r, b"BLOCKING")
    return board, index, pid, (log_r, log_w, out_r, out_w)


def test_stack_dump_of_a_blocked_uvloop_worker() -> None:
    board, index, pid, (log_r, log_w, out_r, out_w) = start_blocked_worker()
    # Before the refresh the slot still shows no request: it was written before the block.
    before = board.read(index)
    assert before is not None
    assert before.oldest is None
    os.kill(pid, STACK_SIGNAL)
    log = read_until(log_r, b"distinctive_blocking_handler_x7").decode()
    assert "most recent call first" in log
    # The chained Python handler refreshed the slot without faking a heartbeat.

    def refreshed() -> WorkerSample | None:
        sample = board.read(index)
        assert sample is not None
        return sample if sample.oldest is not None else None

    after = wait_until(refreshed, 10.0, "the slot to be refreshed")
    assert after.oldest is not None
    assert (after.oldest.method, after.oldest.path) == ("GET", "/task/sleep?seconds=60")
    assert after.in_progress == 1
    assert after.heartbeat_mono == before.heartbeat_mono
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    for fd in (log_r, log_w, out_r, out_w):
        os.close(fd)
    board.close()


def test_watchdog_drives_refresh_stack_and_kill() -> None:
    """The master's side in miniature: snapshot -> decisions -> signals, on a real worker."""
    board, _, pid, (log_r, log_w, out_r, out_w) = start_blocked_worker()
    dog = Watchdog(blocked_after=0.2, kill_grace=0.2)
    limits = {"task": Limits(timeout=1.2, soft_timeout=0.4)}  # wide windows: CI may lag
    done: list[str] = []
    killed: list[str] = []

    def tick() -> bool:
        for action in dog.check(board.snapshot(), limits, time.monotonic()):
            done.append(action.kind)
            if action.kind == REFRESH:
                os.kill(action.pid, REFRESH_SIGNAL)
            elif action.kind == STACK:
                os.kill(action.pid, STACK_SIGNAL)
            elif action.kind == KILL:
                killed.append(action.message)
                os.kill(action.pid, signal.SIGKILL)
        return KILL in done

    wait_until(tick, 20.0, "the watchdog to kill", interval=0.02)  # the master's loop tick
    assert done == [REFRESH, STACK, STACK, KILL]
    (killed_message,) = killed
    _, status = os.waitpid(pid, 0)
    assert os.WTERMSIG(status) == signal.SIGKILL
    # Two dumps (soft, then hard), each naming the blocking function.
    log = read_until(log_r, b"distinctive_blocking_handler_x7")
    os.set_blocking(log_r, False)
    try:
        log += os.read(log_r, 65536)
    except BlockingIOError:
        pass
    assert log.count(b"distinctive_blocking_handler_x7") == 2
    # By the kill, the refresh had put the blocking request into the slot and the message.
    assert "serving GET /task/sleep?seconds=60" in killed_message
    for fd in (log_r, log_w, out_r, out_w):
        os.close(fd)
    board.close()
