"""The waits of `reload`, `start -g` and `stop -g` end when the master cannot tell: it exited,
or the group never got there within the bound."""

from __future__ import annotations

from typing import Any

from aioworker.cli import waiting

RELOADING = {"groups": {"web": {"generation": 1, "state": "reloading"}}}


def test_a_master_that_exits_mid_wait_fails_what_is_pending() -> None:
    answers: list[dict[str, Any] | None] = [RELOADING, None]

    def query(command: str, **params: Any) -> dict[str, Any] | None:
        assert (command, params) == ("reload_status", {"groups": ["web"]})
        return answers.pop(0)

    outcome = waiting.wait_reloaded(query, {"web": 1}, timeout=30.0)
    assert outcome.failed == {"web": "the master exited before it was done"}
    assert (outcome.pending, outcome.done) == ([], [])


def test_a_group_that_never_settles_fails_after_the_bound() -> None:
    outcome = waiting.wait_reloaded(lambda command, **params: RELOADING, {"web": 1}, timeout=0.0)
    assert outcome.failed == {"web": "still not done after 0s (see `status`)"}


def test_an_earlier_generation_done_is_not_this_reload() -> None:
    rows = [
        {"groups": {"web": {"generation": 1, "state": "reloaded"}}},  # the reload before
        {"groups": {"web": {"generation": 2, "state": "reloaded"}}},
    ]
    outcome = waiting.wait_reloaded(lambda command, **params: rows.pop(0), {"web": 2}, 30.0)
    assert (outcome.done, outcome.failed, rows) == (["web"], {}, [])
