"""Supervision decisions with plain data: no fork, no clock."""

from __future__ import annotations

import pytest

from aioworker.supervisor.plan import (
    BACKOFF_MAX,
    FAILING_AFTER,
    SPAWN_RETRY,
    STABLE_AFTER,
    GroupWant,
    Kill,
    SlotState,
    Spawn,
    Stop,
    WorkerInfo,
    after_exit,
    after_spawn_failure,
    backoff_delay,
    group_failing,
    older_serves_slot,
    plan,
    reload_abandoned,
    settle,
    start_failed,
    start_settled,
)

WEB = GroupWant("web", count=2, generation=0, start_timeout=10.0, stop_timeout=5.0)


def ready(pid: int, slot: int, gen: int = 0, **kw: object) -> WorkerInfo:
    return WorkerInfo(pid, "web", slot, generation=gen, started=0.0, ready_at=1.0, **kw)  # type: ignore[arg-type]


def test_empty_group_spawns_every_slot() -> None:
    result = plan([WEB], [], {}, now=0.0)
    assert result.actions == (Spawn("web", 0, "start"), Spawn("web", 1, "start"))


def test_full_group_does_nothing() -> None:
    result = plan([WEB], [ready(1, 0), ready(2, 1)], {}, now=100.0)
    assert result.actions == ()
    assert result.wake_at is None


def test_failed_fork_counts_as_a_failure_and_is_never_retried_at_once() -> None:
    state = after_spawn_failure(SlotState(), 100.0, "fork failed: out of memory")
    assert state == SlotState(1, 100.0 + SPAWN_RETRY, -1, "fork failed: out of memory")
    assert plan([WEB], [ready(1, 0)], {("web", 1): state}, now=100.5).actions == ()
    for _ in range(FAILING_AFTER - 1):
        state = after_spawn_failure(state, 100.0, "again")
    assert group_failing({("web", 1): state}, "web")
    assert state.retry_at == 100.0 + max(backoff_delay(FAILING_AFTER), SPAWN_RETRY)


def test_crashed_slot_waits_for_its_backoff() -> None:
    slots = {("web", 1): SlotState(failures=3, retry_at=50.0)}
    early = plan([WEB], [ready(1, 0)], slots, now=49.0)
    assert early.actions == ()
    assert early.wake_at == 50.0
    due = plan([WEB], [ready(1, 0)], slots, now=50.0)
    assert due.actions == (Spawn("web", 1, "start"),)


@pytest.mark.parametrize(
    ("failures", "delay"),
    [
        pytest.param(0, 0.0, id="none"),
        pytest.param(1, 0.0, id="first-crash-restarts-at-once"),
        pytest.param(2, 0.5, id="second"),
        pytest.param(3, 1.0, id="third"),
        pytest.param(5, 4.0, id="fifth"),
        pytest.param(40, BACKOFF_MAX, id="capped"),
    ],
)
def test_backoff_doubles_and_caps(failures: int, delay: float) -> None:
    assert backoff_delay(failures) == delay


def test_quick_exits_grow_the_backoff_and_mark_the_group_failing() -> None:
    state = SlotState()
    slots = {}
    for n in range(1, FAILING_AFTER + 1):
        booting = WorkerInfo(10 + n, "web", 0, started=float(n))
        state = after_exit(state, booting, now=float(n), error="ImportError: boom")
        assert state.failures == n
        assert state.retry_at == n + backoff_delay(n)
        slots = {("web", 0): state}
        assert group_failing(slots, "web") is (n >= FAILING_AFTER)
    assert state.last_error == "ImportError: boom"
    assert not group_failing(slots, "task")


def test_a_worker_that_stayed_up_resets_the_backoff() -> None:
    state = SlotState(failures=6, retry_at=0.0)
    long_lived = WorkerInfo(7, "web", 0, started=0.0, ready_at=1.0)
    after = after_exit(state, long_lived, now=1.0 + STABLE_AFTER)
    assert after.failures == 1
    assert after.retry_at == 1.0 + STABLE_AFTER  # restarted at once
    short_lived = WorkerInfo(8, "web", 0, started=0.0, ready_at=1.0)
    assert after_exit(state, short_lived, now=2.0).failures == 7


def test_settle_resets_failures_once_a_worker_stayed_up() -> None:
    state = SlotState(failures=4, retry_at=3.0)
    young = ready(1, 0)
    assert settle(state, [young], now=1.0 + STABLE_AFTER - 0.1) == state
    assert settle(state, [young], now=1.0 + STABLE_AFTER).failures == 0


@pytest.mark.parametrize(
    "worker",
    [
        pytest.param(WorkerInfo(1, "web", 0, ready_at=1.0, stopping_since=3.0), id="stopped"),
        pytest.param(
            WorkerInfo(1, "web", 0, ready_at=1.0, stopping_since=3.0, killed=True),
            id="killed-after-stop-timeout",
        ),
        pytest.param(WorkerInfo(1, "web", 0, stopping_since=3.0), id="stopped-while-starting"),
    ],
)
def test_requested_exits_are_not_failures(worker: WorkerInfo) -> None:
    state = SlotState(failures=2, retry_at=9.0)
    assert after_exit(state, worker, now=4.0) == state


def test_stopping_worker_is_killed_after_its_stop_timeout() -> None:
    stopping = ready(1, 0, stopping_since=10.0)
    waiting = plan([WEB], [stopping, ready(2, 0, gen=0), ready(3, 1)], {}, now=14.0)
    assert waiting.actions == ()
    assert waiting.wake_at == 15.0
    due = plan([WEB], [stopping, ready(2, 0), ready(3, 1)], {}, now=15.0)
    assert due.actions == (Kill(1, "still running 5s after stop"),)


def test_worker_that_never_gets_ready_is_killed() -> None:
    booting = WorkerInfo(1, "web", 0, started=0.0)
    result = plan([WEB], [booting, ready(2, 1)], {}, now=10.0)
    assert result.actions == (Kill(1, "not ready after 10s"),)
    killed = WorkerInfo(1, "web", 0, started=0.0, killed=True)
    state = after_exit(SlotState(), killed, now=10.0)
    assert state.failures == 1


def test_rolling_reload_goes_one_slot_at_a_time() -> None:
    want = GroupWant("web", count=2, generation=1, start_timeout=10.0, stop_timeout=5.0)
    old = [ready(1, 0), ready(2, 1)]
    first = plan([want], old, {}, now=20.0)
    assert first.actions == (Spawn("web", 0, "reload"),)

    starting = WorkerInfo(3, "web", 0, generation=1, started=20.0)
    # The old worker keeps serving and no other slot starts while slot 0's replacement boots.
    assert plan([want], [*old, starting], {}, now=21.0).actions == ()

    ready_new = WorkerInfo(3, "web", 0, generation=1, started=20.0, ready_at=21.0)
    step = plan([want], [*old, ready_new], {}, now=21.0)
    assert step.actions == (Stop(1, "reload: replacement ready"), Spawn("web", 1, "reload"))

    draining = ready(1, 0, stopping_since=21.0)
    done = [draining, ready_new, WorkerInfo(4, "web", 1, generation=1, ready_at=22.0), old[1]]
    assert plan([want], done, {}, now=22.0).actions == (Stop(2, "reload: replacement ready"),)


def test_failed_replacement_keeps_the_old_worker_and_abandons_the_reload() -> None:
    want = GroupWant("web", count=2, generation=1)
    old = [ready(1, 0), ready(2, 1)]
    failed = WorkerInfo(3, "web", 0, generation=1, started=20.0)
    state = after_exit(SlotState(), failed, now=21.0, error="boom", replaced_by_older=True)
    slots = {("web", 0): state}
    assert reload_abandoned(want, slots)
    assert plan([want], old, slots, now=100.0).actions == ()
    # The next reload (a new generation) tries again.
    again = GroupWant("web", count=2, generation=2)
    assert not reload_abandoned(again, slots)
    assert plan([again], old, slots, now=100.0).actions == (Spawn("web", 0, "reload"),)


def test_count_increase_and_decrease() -> None:
    more = GroupWant("web", count=3)
    assert plan([more], [ready(1, 0), ready(2, 1)], {}, now=5.0).actions == (
        Spawn("web", 2, "start"),
    )
    fewer = GroupWant("web", count=1)
    assert plan([fewer], [ready(1, 0), ready(2, 1)], {}, now=5.0).actions == (
        Stop(2, "count reduced"),
    )


def test_stopping_everything() -> None:
    stop = GroupWant("web", count=0)
    assert plan([stop], [ready(1, 0), ready(2, 1)], {}, now=5.0).actions == (
        Stop(1, "stopping"),
        Stop(2, "stopping"),
    )


def test_recycled_worker_is_replaced_before_it_is_stopped() -> None:
    tired = ready(1, 0, recycle="max_requests")
    first = plan([WEB], [tired, ready(2, 1)], {}, now=5.0)
    assert first.actions == (Spawn("web", 0, "recycle: max_requests"),)
    fresh = WorkerInfo(3, "web", 0, started=5.0, ready_at=6.0)
    assert plan([WEB], [tired, fresh, ready(2, 1)], {}, now=6.0).actions == (
        Stop(1, "max_requests"),
    )


def test_start_failed_only_when_every_slot_failed_and_none_is_ready() -> None:
    one_failed = {("web", 0): SlotState(failures=1)}
    assert not start_failed(WEB, [], one_failed)
    both = {("web", 0): SlotState(failures=1), ("web", 1): SlotState(failures=1)}
    assert start_failed(WEB, [], both)
    assert not start_failed(WEB, [ready(1, 0)], both)


def test_start_settles_once_every_slot_is_ready_or_has_failed() -> None:
    booting = WorkerInfo(2, "web", 1, started=0.0)
    assert not start_settled(WEB, [ready(1, 0), booting], {})
    assert start_settled(WEB, [ready(1, 0), ready(2, 1)], {})
    assert start_settled(WEB, [ready(1, 0)], {("web", 1): SlotState(failures=1)})
    assert not start_settled(WEB, [ready(1, 0)], {("web", 0): SlotState(failures=1)})


def test_a_replacement_is_recognised_while_an_older_worker_serves_its_slot() -> None:
    new = WorkerInfo(3, "web", 0, generation=1, started=5.0)
    assert older_serves_slot(new, [ready(1, 0), ready(2, 1)])
    assert not older_serves_slot(new, [ready(1, 0, stopping_since=4.0), ready(2, 1)])
    assert not older_serves_slot(new, [ready(2, 1)])
    assert not older_serves_slot(ready(1, 0), [ready(1, 0), new])
