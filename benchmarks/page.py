"""docs/benchmarks.md from one results JSON: the page is a pure function of the file beside it.

`python -m benchmarks --publish` writes docs/benchmarks.json and docs/benchmarks.md after a run;
`python -m benchmarks --render FILE` rebuilds the page from a saved JSON without running anything.
Nothing here reads the clock or the machine, so rendering the committed JSON again gives the
committed page byte for byte (tests/test_docs.py checks it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks import report
from benchmarks.profile import profile_md
from benchmarks.ratios import format_ratio

DOCS = Path(__file__).resolve().parent.parent / "docs"
PAGE = DOCS / "benchmarks.md"
DATA = DOCS / "benchmarks.json"

HOW_IT_MEASURES = """\
## How it measures

```sh
scripts/bench                 # every scenario: sets up .venv with the bench extra (+ wrk)
scripts/bench --quick         # the same scenarios, short runs
scripts/bench --only isolation --server aioworker --server uvicorn    # a part
scripts/bench --publish       # ... and write docs/benchmarks.json and this page
.venv/bin/python -m benchmarks --render docs/benchmarks.json   # this page again, from the JSON
.venv/bin/python -m benchmarks.profile --publish   # only the profile section (callgrind, cProfile)
.venv/bin/python -m benchmarks.profile --count-only --loop uvloop   # instructions per request
```

`scripts/bench` is `scripts/install bench` followed by `python -m benchmarks` with your arguments
(`--only SCENARIO` and `--server NAME` repeat; `--builtin-load` forces the built-in load generator;
`--note TEXT` adds a caveat to the notes). Progress goes to stderr, the tables to stdout, and every
figure to `benchmarks/results/latest.json` (plus a time-stamped copy, and the isolation chart
`isolation.png`; that directory is not committed). This page and `docs/benchmarks.json` change only
with `--publish`, or with `--render FILE`, which also copies FILE to `docs/benchmarks.json`.

Each server runs in its own process on 127.0.0.1 and a free port; it counts as started when `GET /`
answers 200 and its workers exist, and is stopped with SIGTERM (a SIGKILL after 15 s is reported in
the notes). With two CPUs or more, the servers are pinned to every CPU but the last and the load
generator to the last one (`sched_setaffinity`, inherited by forked workers). The load comes from
`wrk` (one thread) when it is installed, otherwise from the built-in asyncio generator
(`benchmarks/loadgen.py`): one Python process on one core, which near the ceiling's rate measures
itself as much as the server.

The servers, each with one worker unless said otherwise, access logs off:

| name | command |
|---|---|
| aioworker | `python -m aioworker serve benchmarks.apps:app --count 1` (master + 1 worker) |
| uvicorn | `uvicorn benchmarks.apps:app --http httptools --loop uvloop --no-access-log` |
| granian | `granian --interface asgi --loop uvloop --workers 1 benchmarks.apps:app` |
| hypercorn | `hypercorn -k uvloop -w 1 benchmarks.apps:app` |
| gunicorn | `gunicorn -k uvicorn_worker.UvicornWorker -w 1 benchmarks.apps:app` |
| floor | `python -m benchmarks.floor` |
| ceiling | `python -m benchmarks.ceiling` |

The ceiling is an `asyncio.Protocol` on httptools and uvloop that answers every request with
prebuilt bytes, no ASGI at all: no Python server on this stack can beat it. The floor is the
least an ASGI server on that stack does per request: httptools parsing, the scope, a Task
running the app (what `asyncio.current_task()`, `asyncio.timeout` and anyio need) and one write
of what it sends, with no limits, timeouts, keep-alive timers, flow control, Date header or
counters. It runs hello world and the FastAPI route only; aioworker's req/s over the floor's is
what its own features cost.

The scenarios:

1. **throughput**: the plain ASGI app in `benchmarks/apps.py`: hello world (64 connections), the
   same pipelined 16 deep, 64 KiB and 1 MiB responses, 1 MiB uploads (16 connections for the last
   two). All servers run side by side (an idle one costs nothing) and take turns under load, one
   short run each per round, so a burst of other work on a shared machine spreads over all of them;
   each figure is the run with the median requests per second. A full run also starts two more
   aioworker masters for hello world only (`benchmarks/launch.py`): `aioworker-bare` without any
   master hook, `aioworker-scoreboard` with the `Observability` hook alone, to show what the
   scoreboard costs.
2. **isolation**: the example app's fast `/`, idle and while its blocking `/task/sleep`
   (`time.sleep(0.05)`) is saturated, 4 connections per worker that serves it: uvicorn with 2
   workers serving both, aioworker with one group of 2 workers serving both, and aioworker with a
   `web` group (2 workers) and a `task` group (2 workers) started with `python -m aioworker start
   -c` on a temporary config. The slow load goes straight to the task group's port, as nginx would
   send it.
3. **restart**: 2 workers under a steady load of 16 keep-alive connections from the built-in
   generator. `kill -HUP` to the master several times (aioworker's rolling reload; gunicorn's HUP;
   uvicorn's supervisor `restart_all`), each time until no old worker is left and `/` answers;
   then `kill -9` of the worker holding the most connections, until a replacement runs.
4. **memory**: RSS of every worker process when idle and after each scenario's load.
"""

HOW_TO_READ = """\
## How to read the tables

- **share of ceiling**: a server's hello-world rate over the ceiling's, on the same CPU in the same
  run. It compares servers within one run; absolute req/s depend on the machine and on what else
  runs on it.
- **vs NAME, 1.90x (1.70-2.10)**: aioworker's req/s over NAME's in each round (they ran back to
  back, under the same neighbours): the median of those ratios, then the lowest and highest.
- **CPU us/req**: CPU time (user + system, `/proc/PID/stat`) of all the server's processes during
  a run, over the requests it served: what one request costs, however busy the machine was.
- **p50 / p99**: latency percentiles reported by the load generator. With pipelining, wrk records
  one latency per batch, so only req/s is shown there.
- **failed**: connect, read and write errors, timeouts and non-2xx answers, summed over the modes.
- **isolation**: compare each setup's loaded columns with its idle ones. With one shared pool
  (uvicorn, or one aioworker group) a fast request that lands on a worker busy in the blocking
  route waits behind it, so p99 becomes the slow route's queueing time and the tail swings from
  run to run for every server. With groups, the slow route runs in other processes: the fast
  route's loaded figures should stay close to its idle ones.
- **restart**: "unanswered" counts requests on a reused keep-alive connection that closed before
  any byte of the answer; in a graceful reload the server had not read them, so HTTP clients may
  resend them. After `kill -9` the requests in flight on the killed worker are lost in every server.
- **memory**: `aioworker` rows are worker processes only; the master is not counted, and neither
  is any other server's supervisor.
- granian runs its Rust I/O threads and its Python thread on the one server CPU; hypercorn parses
  HTTP in pure Python (h11), hence its figures.
"""

# Scenarios that older results files do not hold: described only when the JSON has them, so a
# page rendered from such a file stays as it was.
MORE_SCENARIOS = {
    "blocked": """\
**blocked**: the example app with 2 workers. One client holds a worker in
   `/task/sleep?seconds=6` (`time.sleep`: its event loop stops); once the worker holding that
   connection sleeps in the kernel (`/proc/PID/wchan`), 60 fresh connections arrive one every
   20 ms (`Connection: close`), each a `GET /info`, and each one's latency is recorded by an
   open-loop client (`benchmarks/arrivals.py`). aioworker twice, `start -c` with one group of 2
   workers: `reuse_port = true` (a socket per worker, steered) and `reuse_port = false` (the
   default: one shared socket); uvicorn `--workers 2`; gunicorn with uvicorn workers, `-w 2`. The
   servers take turns, 3 rounds.
""",
    "mixed": """\
**mixed**: the example app with 4 workers: aioworker `start -c` with the default listener
   (`reuse_port = false`) and with `reuse_port = true` (steered), uvicorn `--workers 4`.
   Requests arrive at 25 per second for 20 s, each on a new connection, on a Poisson schedule
   drawn from a seed (the same for every server in a round): 90% block their worker 20 ms, 10%
   block it 1 s (`/task/sleep`). The figures are the short requests' latencies. The servers
   take turns, 3 rounds.
""",
    "features": """\
**features**: hello world on a master with one worker (`benchmarks/launch.py --master --config`),
   once plain and once per option a user turns on: the access log (at log level info, lines to a
   file), proxy headers (`forwarded_allow_ips`, every request carrying `X-Forwarded-For` and
   `-Proto`), the scoreboard (the `Observability` master hook), `max_requests`, and TLS (an
   `https://` listen with a self-signed EC P-256 certificate made for the run; wrk keeps its 64
   connections, so the figure is encryption per request, not handshakes). They take turns,
   5 rounds; each is compared with plain round by round.
""",
    "websocket": """\
**websocket**: `benchmarks/apps.py`'s `/ws` echo on one worker per server: aioworker, uvicorn
   with each of its WebSocket implementations (`--ws websockets`, `websockets-sansio`,
   `wsproto`) and granian. Each round starts every server afresh, one after the other, and
   measures three things: the worker's RSS growth over N WebSockets opened and left idle, over
   N; 50 connections each echoing 16-byte binary messages one at a time; 4 connections echoing
   1 MiB messages. The client (`python -m benchmarks.websocket client`, on the load CPU) sends
   raw frames with a zero mask key and offers no extension, so nothing is compressed.
""",
}

MORE_READING = {
    "blocked": """\
- **blocked**: "stranded" connections waited more than 250 ms: they went to the blocked worker
  and waited for its sleep, or (aioworker with `reuse_port = true`) for the master to see the
  worker blocked (its heartbeat 150 ms late) and move them to the other worker. A shared socket
  has nothing to steer: only the free worker accepts. "served by the blocked worker" counts
  answers whose `/info` names the worker that slept.
""",
    "mixed": """\
- **mixed**: a short request is fast only when it reaches a worker that is not in a long
  sleep. The offered work is 25 x (0.9 x 0.02 + 0.1 x 1) = 2.95 worker-seconds per second, about
  74% of 4 workers, so every server queues some short requests behind long ones; the p99 of the
  short requests shows how long. The two aioworker rows differ only in the listener: per-worker
  sockets with steering and moving, or one shared socket.
""",
    "websocket": """\
- **websocket**: idle KiB per WebSocket is what holding a connection costs the worker (RSS
  pages, so a few KiB either way is noise); msg/s counts echoes the client got back. "vs NAME"
  is aioworker's figure over NAME's in the same round: above 1x for msg/s is faster, below 1x
  for idle memory is smaller.
""",
}


def _more(texts: dict[str, str], results: dict[str, Any], first: int | None = None) -> str:
    """The texts of the scenarios `results` holds; numbered from `first` when given."""
    present = [texts[key] for key in texts if key in results]
    if first is None:
        return "".join(present)
    return "".join(f"{first + i}. {text}" for i, text in enumerate(present))


def _wrk(machine: dict[str, Any]) -> str:
    """wrk's version line without its copyright notice."""
    return str(machine.get("wrk", "")).split(" Copyright")[0]


def _spread(results: dict[str, Any]) -> list[str]:
    """How far hello world moved between rounds: the noise to read every other figure against."""
    servers = results.get("throughput", {}).get("servers", {})
    spreads = {
        label: modes["hello"]["spread_pct"]
        for label, modes in servers.items()
        if "spread_pct" in modes.get("hello", {})
    }
    if not spreads:
        return []
    rounds = results["throughput"]["plan"]["hello_rounds"]
    low, high = min(spreads.values()), max(spreads.values())
    return [
        f"- Noise: each server's hello-world req/s moved by {low:g} to {high:g}% between its "
        f"{rounds} rounds (max - min over the median; `spread_pct` in the JSON)."
    ]


def _run(meta: dict[str, Any]) -> list[str]:
    m = meta["machine"]
    versions = ", ".join(f"{name} {version}" for name, version in m.get("packages", {}).items())
    when = (
        f"{meta['started']} to {meta['finished']} (UTC)"
        if meta.get("started") and meta.get("finished")
        else "not recorded in the JSON"
    )
    return [
        "## The run",
        "",
        f"- Date: {when}.",
        f"- Command: `{meta['command']}`"
        + (" (`--quick`: short runs, one round each)." if meta.get("quick") else "."),
        f"- Revision: {m.get('revision') or 'unknown'}"
        + (" (the working tree differed from it)." if "+changes" in m.get("revision", "") else "."),
        f"- Machine: {m['nproc']} CPUs ({m['cpu_model'] or 'model unknown'}), "
        f"{m['cpus_usable']} usable; Linux {m['kernel']}; Python {m['python']}.",
        f"- Load generator: {meta['load_generator']}"
        + (f" ({_wrk(m)})" if _wrk(m) and meta["load_generator"].startswith("wrk") else "")
        + f"; {meta['pinning']}.",
        f"- aioworker started with `{meta['aioworker_via']}`.",
        f"- Versions: {versions}.",
    ]


def summary(results: dict[str, Any]) -> list[str]:
    """The few figures worth quoting elsewhere (the README quotes these), each from a table."""
    lines: list[str] = []
    hello = results.get("throughput", {}).get("servers", {})
    ours, theirs = hello.get("aioworker", {}).get("hello"), hello.get("uvicorn", {}).get("hello")
    versus = results.get("throughput", {}).get("versus", {}).get("hello", {})
    if ours and theirs and versus:
        # Round by round, with the spread (benchmarks/ratios.py); older files lack "versus".
        rivals = ", ".join(f"{format_ratio(spread)} {rival}" for rival, spread in versus.items())
        lines.append(
            f"- Hello world, one worker each: aioworker {ours['rps']:,.0f} req/s, uvicorn "
            f"{theirs['rps']:,.0f} req/s; aioworker's req/s over each, per round: {rivals}."
        )
    elif ours and theirs:
        lines.append(
            f"- Hello world, one worker each: aioworker {ours['rps']:,.0f} req/s, uvicorn "
            f"{theirs['rps']:,.0f} req/s ({ours['rps'] / theirs['rps']:.2f}x)."
        )
    setups = results.get("isolation", {}).get("setups", {})
    for label, who in (("uvicorn-shared", "uvicorn, 2 workers"), ("aioworker-groups", "")):
        r = setups.get(label)
        if not r:
            continue
        who = who or "aioworker, `web` and `task` groups of 2 workers"
        idle, loaded = r["idle"], r["loaded"]
        lines.append(
            f"- Fast route while the blocking route is saturated ({who}): p99 "
            f"{idle['latency_ms']['p99']:,.2f} ms idle, {loaded['latency_ms']['p99']:,.2f} ms "
            f"loaded; {idle['rps']:,.0f} req/s idle, {loaded['rps']:,.0f} req/s loaded."
        )
    restart = results.get("restart", {})
    for name, r in restart.get("servers", {}).items():
        rel = r["reload"]
        lines.append(
            f"- {restart['reloads']} rolling reloads under load, {name}: {rel['failed']:,} "
            f"failed of {rel['requests']:,} requests."
        )
    blocked = results.get("blocked", {})
    if blocked.get("setups"):
        stranded = ", ".join(f"{label} {r['stranded']}" for label, r in blocked["setups"].items())
        lines.append(
            f"- One of 2 workers blocked, {blocked['connections']} fresh connections: waited "
            f"more than {blocked['stranded_ms']:g} ms (median of "
            f"{report.count_rounds(blocked['rounds'])}): {stranded}."
        )
    mixed = results.get("mixed", {})
    if "p99_ratio" in mixed:
        ours = mixed["setups"]["aioworker"]
        theirs = mixed["setups"]["uvicorn"]
        lines.append(
            f"- Mixed slow work, 4 workers: short requests p50 / p99 aioworker "
            f"{ours['short_p50_ms']['median']:,.1f} / {ours['short_p99_ms']['median']:,.0f} ms, "
            f"uvicorn {theirs['short_p50_ms']['median']:,.1f} / "
            f"{theirs['short_p99_ms']['median']:,.0f} ms ({mixed['p99_ratio']:.3f}x at p99)."
        )
    lines += _websocket_summary(results.get("websocket", {}))
    queued = results.get("burst", {}).get("setups", {}).get("queue-fed")
    if queued:
        idle, during = queued["fast_idle_ms"], queued["fast_burst_ms"]
        lines.append(
            f"- A burst of {queued['burst']} blocking requests on a queue-fed group of 2: "
            f"{queued['statuses'].get('200', 0)} answered 200, {queued['errors']} errors, "
            f"drained in {queued['drain_s']} s; the fast route's p99 {idle['p99']} ms idle, "
            f"{during['p99']} ms during the burst."
        )
    return ["## Summary", "", *lines, ""] if lines else []


def _websocket_summary(data: dict[str, Any]) -> list[str]:
    """One line: aioworker's idle memory and echo rates per WebSocket, and its ratios."""
    ours = data.get("servers", {}).get("aioworker")
    if not ours or not data.get("versus"):
        return []
    parts = []
    for kind, what, digits in (
        ("idle_kib", "idle KiB per WebSocket", 1),
        ("small", "16 B echoes/s", 0),
    ):
        rivals = ", ".join(
            f"{format_ratio(spread)} {rival}"
            for rival, spread in data["versus"].get(kind, {}).items()
        )
        if ours[kind] is not None and rivals:
            parts.append(f"{what} {ours[kind]:,.{digits}f} ({rivals})")
    if not parts:
        return []
    return [
        "- WebSockets, one worker each, aioworker: " + "; ".join(parts) + " (aioworker's figure "
        "over each server's, per round)."
    ]


def render(results: dict[str, Any]) -> str:
    """The whole page: what ran where and when, the figures, then how to read them."""
    lines = [
        "# Benchmarks",
        "",
        "<!-- Generated by `python -m benchmarks --render docs/benchmarks.json` from the JSON "
        "beside this file; do not edit by hand. -->",
        "",
        "Every figure below comes from one run of the harness in `benchmarks/`, saved in "
        "[benchmarks.json](benchmarks.json) (all rounds, error counts and percentiles are there). "
        "The figures belong to that run on that machine: rerun it on yours before relying on "
        "them.",
        "",
        *_run(results["meta"]),
        *_spread(results),
        "",
        *summary(results),
        "## Results",
        "",
        *report.tables(results),
        # Written by `python -m benchmarks.profile --publish`, independent of the scenarios.
        *([*profile_md(results["profile"]), ""] if "profile" in results else []),
        HOW_IT_MEASURES + _more(MORE_SCENARIOS, results, first=5),
        HOW_TO_READ + _more(MORE_READING, results),
    ]
    return "\n".join(lines).rstrip("\n") + "\n"


def publish(results: dict[str, Any]) -> list[Path]:
    """Write the JSON and the page made from it, side by side (DATA and PAGE)."""
    DATA.parent.mkdir(parents=True, exist_ok=True)
    DATA.write_text(json.dumps(results, indent=2) + "\n")
    PAGE.write_text(render(results))
    return [DATA, PAGE]


def rerender(source: Path) -> list[Path]:
    """The page again from a saved JSON; a JSON from elsewhere is copied to DATA first."""
    results = json.loads(source.read_text())
    if DATA.exists() and source.resolve() == DATA.resolve():
        PAGE.write_text(render(results))
        return [PAGE]
    return publish(results)
