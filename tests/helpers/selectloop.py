"""The master's loop shape in a thread, for the servers the master runs on its selector."""

from __future__ import annotations

import selectors
import threading
from collections.abc import Callable


class SelectLoop:
    """Select, call key.data() for each ready key, then run `ticks`; in a thread for the test.

    A server under test attaches to `selector` and appends its tick before start().
    """

    def __init__(self) -> None:
        self.selector = selectors.DefaultSelector()
        self.ticks: list[Callable[[], None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for key, _ in self.selector.select(0.02):
                key.data()
            for tick in self.ticks:
                tick()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.selector.close()
