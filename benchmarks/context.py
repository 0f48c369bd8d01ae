"""What every scenario shares: options, CPU split, available servers, progress lines, memory."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any

from benchmarks.procs import Server
from benchmarks.servers import Availability
from benchmarks.wrk import Load, LoadRun, run_load


@dataclass
class Context:
    quick: bool
    avail: Availability
    server_cpus: set[int] | None
    load_cpus: set[int] | None
    builtin: bool = False  # use the built-in load generator even when wrk is installed
    servers: tuple[str, ...] = ()
    started: float = field(default_factory=time.monotonic)
    memory: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def progress(self, message: str) -> None:
        elapsed = time.monotonic() - self.started
        print(f"[{elapsed:6.1f}s] {message}", file=sys.stderr, flush=True)

    def note(self, message: str) -> None:
        """A caveat that belongs in the report (a skipped server, a missing feature)."""
        if message not in self.notes:
            self.notes.append(message)
            self.progress(f"note: {message}")

    def record_memory(self, label: str, phase: str, server: Server) -> list[float]:
        rss = server.worker_rss()
        self.memory.setdefault(label, {})[phase] = rss
        return rss

    def stop(self, server: Server, label: str = "") -> None:
        server.stop()
        if server.killed:
            self.note(f"{label or server.name} did not exit within 15 s of SIGTERM: killed")

    def load(self, load: Load, during: Any = None) -> dict[str, Any]:
        return run_load(load, self.load_cpus, self.builtin, during)

    def start_load(self, load: Load, builtin: bool = False) -> LoadRun:
        return LoadRun(load, self.load_cpus, self.builtin or builtin)

    def wanted(self, name: str) -> bool:
        """Whether `name` runs in this invocation (selected and installed); notes why not."""
        if self.servers and name not in self.servers:
            return False
        if not self.avail.has(name):
            self.note(f"{name} skipped: {self.avail.missing[name]}")
            return False
        return True
