"""Wait for a condition that changes without an event to wait on: poll it until true.

The one polling loop of the tests. Use it only where nothing announces the change (a counter in
another thread or process, shared memory, a socket the server closes); a log line or a pipe is
an event, and the tests wait on those instead.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T | None],
    timeout: float = 5.0,
    what: str = "",
    *,
    interval: float = 0.005,
) -> T:
    """Call `predicate` every `interval` seconds until it returns something true; return that.

    A predicate that answers `X | None` makes the result an `X`: return the thing waited for.

    Fails the test with `what` (or the predicate's repr) once `timeout` seconds have passed.
    """
    deadline = time.monotonic() + timeout
    pause = threading.Event()  # never set: wait() is a sleep that names no fixed guess
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        pause.wait(interval)
    return value
