"""Shared test fixtures: the event-loop parametrization, live in-process servers, orphan checks.

Every engine test runs twice, under asyncio's own loop and under uvloop (`loop_name`). The helpers
these fixtures use live in tests/helpers/ (engine.py, client.py, wait.py); tests import them there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from aioworker.config import HttpSettings
from tests.helpers.engine import FAST, LOOPS, ServerThread
from tests.helpers.observe import kill_children


@pytest.fixture(params=sorted(LOOPS))
def loop_name(request: pytest.FixtureRequest) -> str:
    """The event loop implementation this test runs under: "asyncio" or "uvloop"."""
    return str(request.param)


@pytest.fixture
def loop_factory(loop_name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    return LOOPS[loop_name]


@pytest.fixture
def serve(
    loop_factory: Callable[[], asyncio.AbstractEventLoop],
) -> Iterator[Callable[..., ServerThread]]:
    """Factory: serve(app, settings=FAST, lifespan="auto") -> a started ServerThread.

    At teardown every server is shut down gracefully; an exception that reached the event
    loop's exception handler (a bug: the engine must handle everything itself) fails the test.
    """
    started: list[ServerThread] = []

    def start(
        app: Any,
        settings: HttpSettings | None = None,
        *,
        lifespan: str = "auto",
        uds: str | None = None,
    ) -> ServerThread:
        server = ServerThread(app, settings or FAST, loop_factory, lifespan=lifespan, uds=uds)
        started.append(server)
        return server.start()

    yield start
    for server in reversed(started):
        server.stop()
    errors = [context for server in started for context in server.loop_errors]
    assert not errors, f"exceptions reached the event loop: {errors}"


@pytest.fixture
def no_orphans() -> Iterator[None]:
    """A failed test must not leave a child started by tests.helpers.observe.fork running."""
    yield
    kill_children()
