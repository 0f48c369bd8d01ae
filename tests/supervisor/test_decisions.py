"""Decisions moved out of the master's system calls, with plain data: exit causes, reload
failure and completion, resizing, and what a re-read config.toml may change."""

from __future__ import annotations

import dataclasses

import pytest

from aioworker.config import Config, GroupSettings, MetricsSettings, ServerSettings
from aioworker.supervisor.plan import (
    GroupWant,
    SlotState,
    WorkerInfo,
    accepting_slots,
    exit_cause,
    reload_complete,
    reload_failed,
    resized,
    retry_now,
)
from aioworker.supervisor.records import Group
from aioworker.supervisor.reloading import bump, reconcile


@pytest.mark.parametrize(
    ("worker", "cause"),
    [
        pytest.param(WorkerInfo(1, "web", 0), "boot", id="never-ready"),
        pytest.param(
            WorkerInfo(1, "web", 0, killed=True, cause="timeout"), "boot", id="killed-boot"
        ),
        pytest.param(WorkerInfo(1, "web", 0, ready_at=1.0), "crash", id="crash"),
        pytest.param(WorkerInfo(1, "web", 0, killed=True, ready_at=1.0), "killed", id="killed"),
        pytest.param(
            WorkerInfo(1, "web", 0, killed=True, cause="timeout", ready_at=1.0),
            "timeout",
            id="timeout",
        ),
    ],
)
def test_exit_cause(worker: WorkerInfo, cause: str) -> None:
    assert exit_cause(worker) == cause


@pytest.mark.parametrize(
    ("worker", "older_serves", "failed"),
    [
        pytest.param(WorkerInfo(2, "web", 0, generation=1), True, True, id="replacement-died"),
        pytest.param(WorkerInfo(2, "web", 0, generation=1), False, False, id="no-older"),
        pytest.param(
            WorkerInfo(2, "web", 0, generation=1, ready_at=1.0), True, False, id="was-ready"
        ),
        pytest.param(
            WorkerInfo(2, "web", 0, generation=1, stopping_since=2.0), True, False, id="asked"
        ),
    ],
)
def test_reload_failed(worker: WorkerInfo, older_serves: bool, failed: bool) -> None:
    assert reload_failed(worker, older_serves) is failed


def test_reload_complete_only_when_every_slot_runs_the_new_generation() -> None:
    want = GroupWant("web", count=2, generation=1)
    old = [WorkerInfo(p, "web", s, generation=0, ready_at=1.0) for p, s in ((1, 0), (2, 1))]
    new0 = WorkerInfo(3, "web", 0, generation=1, ready_at=1.0)
    new1 = WorkerInfo(4, "web", 1, generation=1, ready_at=1.0)
    starting1 = dataclasses.replace(new1, ready_at=None)
    draining = [dataclasses.replace(w, stopping_since=2.0) for w in old]
    assert not reload_complete(want, old)
    assert not reload_complete(want, [draining[0], old[1], new0, starting1])
    assert not reload_complete(want, [draining[0], old[1], new0, new1])  # old[1] still serves
    assert reload_complete(want, [*draining, new0, new1])
    assert reload_complete(want, [new0, new1, WorkerInfo(9, "task", 0, ready_at=1.0)])
    assert not reload_complete(GroupWant("web", count=3, generation=1), [new0, new1])


@pytest.mark.parametrize(
    ("count", "delta", "after"), [(2, 1, 3), (2, -1, 1), (1, -1, 1), (0, 1, 1), (5, -1, 4)]
)
def test_ttin_ttou_never_leave_the_default_group_empty(count: int, delta: int, after: int) -> None:
    assert resized(count, delta) == after


WEB = GroupSettings(name="web", app="a:app", listen="http://127.0.0.1:0", count=2)
TASK = GroupSettings(name="task", app="a:app", listen="http://127.0.0.1:0", count=1)
RUNNING = Config(groups=(WEB, TASK))


def test_reconcile_applies_what_a_reload_can_and_keeps_the_rest() -> None:
    new = Config(
        server=dataclasses.replace(RUNNING.server, log_level="debug", user="nobody"),
        groups=(
            dataclasses.replace(WEB, count=3, listen="http://127.0.0.1:9"),
            GroupSettings(name="extra", app="a:app", listen="http://127.0.0.1:0"),
        ),
        metrics=MetricsSettings(listen="http://127.0.0.1:0"),
    )
    result = reconcile(RUNNING, new)
    assert result.needs_restart == ("server.user", "groups.web.listen")
    assert (result.added, result.removed) == (("extra",), ("task",))
    web, task = result.config.groups
    assert (web.count, web.listen) == (3, WEB.listen)
    assert task == TASK  # a removed group keeps running until a restart
    assert result.config.server == dataclasses.replace(RUNNING.server, log_level="debug")
    assert result.config.metrics == new.metrics
    assert result.config.server.user == ServerSettings().user


def test_reconcile_keeps_the_app_of_a_preloaded_group() -> None:
    running = Config(groups=(dataclasses.replace(WEB, preload=True),))
    new = Config(groups=(dataclasses.replace(WEB, preload=True, app="b:app", count=4),))
    result = reconcile(running, new)
    assert result.needs_restart == ("groups.web.app",)
    assert (result.config.groups[0].app, result.config.groups[0].count) == ("a:app", 4)


def test_bump_raises_generations_of_reloadable_or_named_groups() -> None:
    frozen = dataclasses.replace(TASK, reloadable=False)
    groups = {"web": Group(WEB, None, 2), "task": Group(frozen, None, 1)}
    every = bump(groups, None)
    assert (every.reloaded, every.skipped, every.unknown) == (("web",), ("task",), ())
    assert (groups["web"].generation, groups["task"].generation) == (1, 0)
    named = bump(groups, ["task", "nope"])
    assert (named.reloaded, named.unknown) == (("task",), ("nope",))
    assert groups["task"].generation == 1
    assert groups["task"].reloading


def test_accepting_slots_are_those_with_a_ready_free_worker() -> None:
    want = GroupWant("task", count=3)
    workers = [
        WorkerInfo(1, "task", 0, ready_at=1.0),
        WorkerInfo(2, "task", 1, busy=True, ready_at=1.0),  # its loop is blocked
        WorkerInfo(3, "task", 2),  # still starting
        WorkerInfo(4, "web", 2, ready_at=1.0),
    ]
    assert accepting_slots(want, workers) == (0,)
    # A reload's replacement serves the slot while the old worker drains.
    replacement = [WorkerInfo(5, "task", 2, generation=1, ready_at=1.0)]
    draining = [WorkerInfo(6, "task", 1, stopping_since=2.0, ready_at=1.0)]
    assert accepting_slots(want, workers + replacement + draining) == (0, 2)
    assert accepting_slots(GroupWant("task", count=1), workers + replacement) == (0,)


def test_retry_now_keeps_the_failure_count() -> None:
    state = SlotState(failures=4, retry_at=99.0, last_error="boom")
    assert retry_now(state) == SlotState(failures=4, retry_at=0.0, last_error="boom")
