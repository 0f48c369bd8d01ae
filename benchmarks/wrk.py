"""Drive wrk (or the built-in generator when wrk is absent) and return one result dict.

Both tools produce the same shape: requests, duration_s, rps, bytes, latency_ms {p50, p90,
p99, max, mean}, errors {connect, read, write, status, timeout} and failed (their sum).
wrk's own Lua `done()` hook prints the figures as JSON, so nothing is scraped from its text.
With pipelining wrk records one latency per batch, and so does the built-in generator.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from benchmarks.procs import affinity

_DONE_LUA = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"p50": %d, "p90": %d, "p99": %d, "max": %d, "mean": %f}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
"""

_PIPELINE_LUA = r"""
init = function(args)
  local r = {}
  for i = 1, %(depth)d do r[i] = wrk.format(nil) end
  batch = table.concat(r)
end
request = function() return batch end
"""

_UPLOAD_LUA = r"""
wrk.method = "POST"
wrk.body = string.rep("x", %(size)d)
wrk.headers["Content-Type"] = "application/octet-stream"
"""


@dataclass(frozen=True)
class Load:
    """What to send: the URL, how many connections, and the shape of each request."""

    url: str
    connections: int = 64
    duration: float = 5.0
    pipeline: int = 1
    upload: int = 0  # request body bytes (POST) when > 0
    timeout: float = 10.0
    headers: tuple[tuple[str, str], ...] = ()  # extra request headers (wrk only)


def wrk_path() -> str | None:
    return shutil.which("wrk") or (os.path.exists("/usr/bin/wrk") and "/usr/bin/wrk") or None


def tool_name(prefer_builtin: bool = False) -> str:
    return "builtin" if prefer_builtin or wrk_path() is None else "wrk"


def _wrk_command(load: Load, script: str) -> list[str]:
    return [
        wrk_path() or "wrk",
        "-t1",
        f"-c{load.connections}",
        f"-d{max(1, round(load.duration))}s",
        f"--timeout={max(1, round(load.timeout))}s",
        "-s",
        script,
        load.url,
    ]


def _builtin_command(load: Load) -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.loadgen",
        load.url,
        "-c",
        str(load.connections),
        "-d",
        str(load.duration),
        "--pipeline",
        str(load.pipeline),
        "--timeout",
        str(load.timeout),
    ]
    if load.upload:
        cmd += ["--method", "POST", "--body-size", str(load.upload)]
    return cmd


def _parse_wrk(stdout: str) -> dict[str, Any]:
    for line in stdout.splitlines():
        if line.startswith("BENCHJSON "):
            raw = json.loads(line[len("BENCHJSON ") :])
            break
    else:
        raise RuntimeError(f"wrk printed no result:\n{stdout[-2000:]}")
    seconds = raw["duration_us"] / 1e6
    lat = raw["latency_us"]
    errors = raw["errors"]
    return {
        "tool": "wrk",
        "requests": raw["requests"],
        "duration_s": round(seconds, 3),
        "rps": round(raw["requests"] / seconds, 1) if seconds else 0.0,
        "bytes": raw["bytes"],
        "latency_ms": {k: round(float(v) / 1000, 3) for k, v in lat.items()},
        "errors": errors,
        "failed": sum(errors.values()),
    }


class LoadRun:
    """One load generator process: start it, optionally stop it early, collect its result."""

    def __init__(self, load: Load, cpus: set[int] | None, prefer_builtin: bool = False) -> None:
        self.load = load
        self.tool = tool_name(prefer_builtin)
        self._script: str | None = None
        if self.tool == "wrk":
            lua = _DONE_LUA
            if load.pipeline > 1:
                lua += _PIPELINE_LUA % {"depth": load.pipeline}
            if load.upload:
                lua += _UPLOAD_LUA % {"size": load.upload}
            for name, value in load.headers:
                lua += f"wrk.headers[{json.dumps(name)}] = {json.dumps(value)}\n"
            fd, self._script = tempfile.mkstemp(prefix="bench-", suffix=".lua")
            with os.fdopen(fd, "w") as f:
                f.write(lua)
            cmd = _wrk_command(load, self._script)
        else:
            cmd = _builtin_command(load)
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=affinity(cpus),
        )

    def stop(self) -> None:
        """End the run now; both tools print their figures on SIGINT."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)

    def result(self) -> dict[str, Any]:
        try:
            out, err = self.proc.communicate(timeout=self.load.duration + 60)
        finally:
            if self._script:
                os.unlink(self._script)
                self._script = None
        if self.tool == "wrk":
            result = _parse_wrk(out)
        else:
            if self.proc.returncode != 0:
                raise RuntimeError(f"load generator failed:\n{err[-2000:]}")
            result = json.loads(out.strip().splitlines()[-1])
        result["connections"] = self.load.connections
        if self.load.pipeline > 1:
            result["pipeline"] = self.load.pipeline
        return result


def run_load(
    load: Load,
    cpus: set[int] | None,
    prefer_builtin: bool = False,
    during: Callable[[LoadRun], None] | None = None,
) -> dict[str, Any]:
    """Run one load to completion; `during(run)` is called while it runs and may stop it."""
    run = LoadRun(load, cpus, prefer_builtin)
    try:
        if during is not None:
            during(run)
    except BaseException:
        run.stop()
        run.result()
        raise
    return run.result()
