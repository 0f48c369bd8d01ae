"""Results out: markdown tables on stdout; JSON and the isolation chart in benchmarks/results/."""

from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks.burst import burst_md
from benchmarks.features import features_md
from benchmarks.ratios import versus_md
from benchmarks.websocket import websocket_md
from benchmarks.wrk import tool_name, wrk_path

RESULTS = Path(__file__).resolve().parent / "results"
PACKAGES = (
    "aioworker",
    "uvicorn",
    "granian",
    "hypercorn",
    "gunicorn",
    "uvicorn-worker",
    "uvloop",
    "httptools",
)


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    wrk = ""
    if wrk_path():
        probe = subprocess.run([wrk_path() or "wrk", "-v"], capture_output=True, text=True)
        wrk = (
            (probe.stdout + probe.stderr).splitlines()[0].strip()
            if probe.stdout + probe.stderr
            else ""
        )
    return {
        "revision": revision(),
        "nproc": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "packages": versions,
        "wrk": wrk,
    }


def utc_now() -> str:
    """The time of day in UTC, to the second: when a run started and finished."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def revision() -> str:
    """The commit measured, with "+changes" when the working tree differs from it."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return ""
    return head + ("+changes" if dirty else "")


def _f(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _x(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:,.3g}x"


def _rps(result: dict[str, Any] | None) -> str:
    return "-" if not result else f"{result['rps']:,.0f}"


def throughput_md(data: dict[str, Any]) -> list[str]:
    table = data["servers"]
    ratios = data["ratios"]
    plan = data["plan"]
    lines = [
        f"### Throughput: one worker each; hello world: median of {plan['hello_rounds']} runs "
        f"of {plan['hello_s']:g} s, other columns: median of {plan['other_rounds']} runs of "
        f"{plan['other_s']:g} s",
        "",
        "| server | hello req/s | p50 ms | p99 ms | share of ceiling | hello CPU us/req "
        "| pipelined x16 req/s | 64 KiB req/s | 1 MiB req/s | 1 MiB upload req/s "
        "| FastAPI req/s | failed |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for label, modes in table.items():
        hello = modes.get("hello")
        share = ratios.get("hello", {}).get(f"{label}_share_of_ceiling")
        failed = sum(r["failed"] for r in modes.values())
        lines.append(
            f"| {label} | {_rps(hello)} | {_f(hello and hello['latency_ms']['p50'])} "
            f"| {_f(hello and hello['latency_ms']['p99'])} "
            f"| {'-' if share is None else f'{share:.0%}'} "
            f"| {_f(hello and hello.get('cpu_us_per_req'), 1)} | {_rps(modes.get('pipelined'))} "
            f"| {_rps(modes.get('64k'))} | {_rps(modes.get('1m'))} | {_rps(modes.get('upload'))} "
            f"| {_rps(modes.get('fastapi'))} | {failed} |"
        )
    bare = table.get("aioworker-bare", {}).get("hello")
    board = table.get("aioworker-scoreboard", {}).get("hello")
    if bare and board:
        cost = 1 - board["rps"] / bare["rps"]
        lines += [
            "",
            f"Scoreboard: hello world on a master with the Observability hook {_rps(board)} req/s, "
            f"without any hook {_rps(bare)} req/s ({-cost:+.1%} with it; the run-to-run spread "
            "is in the JSON).",
        ]
    lines += versus_md(data.get("versus", {}))
    goal = hello_goal(data.get("versus", {}).get("hello", {}))
    if goal:
        lines += ["", goal]
        framework = ahead_goal(data.get("versus", {}).get("fastapi", {}))
        if framework:
            lines.append(framework)
        return lines
    vs = ratios.get("hello", {}).get("aioworker_vs_uvicorn")  # results without "versus"
    if vs is not None:
        verdict = "meets" if vs >= 1.5 else "misses"
        lines += [
            "",
            f"aioworker / uvicorn on hello world: **{vs:.2f}x** ({verdict} the 1.5x target).",
        ]
    return lines


# Issue 15's goal on hello world, as medians of per-round ratios: rival -> lowest ratio.
HELLO_GOAL = {"uvicorn": 2.0, "granian": 1.2, "ceiling": 0.45}


def ahead_goal(versus: dict[str, Any]) -> str:
    """Whether aioworker is ahead of uvicorn and granian on the FastAPI route (issue 15)."""
    checked = [
        (rival, versus[rival]["median"]) for rival in ("uvicorn", "granian") if rival in versus
    ]
    if not checked:
        return ""
    parts = [f"{m:.2f}x {rival} ({'ahead' if m > 1 else 'not ahead'})" for rival, m in checked]
    return "FastAPI route against the goal (ahead of both): " + ", ".join(parts) + "."


def hello_goal(versus: dict[str, Any]) -> str:
    """Whether aioworker's hello world meets HELLO_GOAL, rival by rival (those that ran)."""
    checked = [
        (rival, versus[rival]["median"], low)
        for rival, low in HELLO_GOAL.items()
        if rival in versus
    ]
    if not checked:
        return ""
    parts = [
        f"{median:.2f}x {rival} (goal {low:g}x: {'met' if median >= low else 'missed'})"
        for rival, median, low in checked
    ]
    return (
        "Hello world against the goal, medians of the per-round ratios: " + ", ".join(parts) + "."
    )


def _setup_notes(data: dict[str, Any]) -> list[str]:
    """Under a table: what each setup ran."""
    return ["", *[f"- {label}: {r['setup']}" for label, r in data["setups"].items()]]


def isolation_md(data: dict[str, Any]) -> list[str]:
    lines = [
        f"### Isolation: fast route `/` ({data['fast_connections']} connections) while "
        f"`{data['slow_path']}` is saturated ({data['slow_connections']} connections)",
        "",
        "| setup | idle req/s | idle p50 ms | idle p99 ms | loaded req/s | loaded p50 ms "
        "| loaded p99 ms | p99 loaded/idle | req/s loaded/idle | slow route req/s |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for label, r in data["setups"].items():
        idle, loaded = r["idle"], r["loaded"]
        lines.append(
            f"| {label} | {_rps(idle)} | {_f(idle['latency_ms']['p50'])} "
            f"| {_f(idle['latency_ms']['p99'])} | {_rps(loaded)} "
            f"| {_f(loaded['latency_ms']['p50'])} "
            f"| {_f(loaded['latency_ms']['p99'])} | {_x(r['ratios']['p99'])} "
            f"| {_x(r['ratios']['rps'])} | {r['slow']['rps']:,.1f} |"
        )
    lines += _setup_notes(data)
    return lines


def restart_md(data: dict[str, Any]) -> list[str]:
    lines = [
        f"### Reload and crash under load ({data['workers']} workers, {data['connections']} "
        "connections from the built-in load generator)",
        "",
        f"| server | failed during {data['reloads']} reloads (unanswered) | reload s (mean) "
        "| failed during kill -9 of a worker (unanswered) | respawn s |",
        "|---|--:|--:|--:|--:|",
    ]
    for name, r in data["servers"].items():
        rel, kill = r["reload"], r["kill9"]
        mean = sum(rel["recovery_s"]) / len(rel["recovery_s"]) if rel["recovery_s"] else None
        lines.append(
            f"| {name} | {rel['failed']} ({rel.get('unanswered_reused', '-')}) of "
            f"{rel['requests']:,} | {_f(mean)} | {kill['failed']} "
            f"({kill.get('unanswered_reused', '-')}) of {kill['requests']:,} "
            f"| {_f(kill['recovery_s'][0])} |"
        )
    lines.append("")
    lines += [f"- {name}: {r['how']}" for name, r in data["servers"].items()]
    lines.append(
        "- unanswered: a request on a reused keep-alive connection that closed before any byte "
        "of the answer. In a graceful reload the server had not read it (it closed an idle "
        "connection as the request was on its way), so clients may resend it (browsers, httpx "
        "and urllib3 do for idempotent methods); after kill -9 the worker may have been "
        "running it."
    )
    return lines


def count_rounds(count: int) -> str:
    return f"{count} round" + ("" if count == 1 else "s")


def _per_round(rounds: list[dict[str, Any]], key: str, digits: int = 0) -> str:
    values = [r[key] for r in rounds]
    if any(v is None for v in values):
        return "-"
    return ", ".join(f"{v:,.{digits}f}" for v in values)


def _median_range(spread: dict[str, float], digits: int = 1) -> str:
    return (
        f"{spread['median']:,.{digits}f} ({spread['min']:,.{digits}f} to "
        f"{spread['max']:,.{digits}f})"
    )


def blocked_md(data: dict[str, Any]) -> list[str]:
    n = data["connections"]
    lines = [
        f"### One worker blocked: {n} fresh connections, one every {data['gap_s'] * 1000:g} ms, "
        f"while one of {data['workers']} workers sleeps in `/task/sleep?seconds="
        f"{data['hold_s']:g}` ({count_rounds(data['rounds'])})",
        "",
        f"| setup | stranded of {n} (median) | stranded per round | p50 ms | max ms "
        "| served by the blocked worker, per round | moved by the master, per round | failed |",
        "|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for label, r in data["setups"].items():
        rounds = r["rounds"]
        lines.append(
            f"| {label} | {r['stranded']} | {_per_round(rounds, 'stranded')} "
            f"| {_f(r['p50_ms'])} | {_f(r['max_ms'], 0)} "
            f"| {_per_round(rounds, 'served_by_blocked')} | {_per_round(rounds, 'moved')} "
            f"| {sum(x['failed'] for x in rounds)} |"
        )
    lines += _setup_notes(data)
    lines.append(
        f"- stranded: a `GET {data['path']}` that waited more than {data['stranded_ms']:g} ms "
        "(a free worker answers it in about a millisecond). p50: the median of the rounds' "
        "medians; max: the slowest connection of any round. Moved: connections the aioworker "
        "master accepted from the blocked worker's queue and handed to the other worker."
    )
    return lines


def mixed_md(data: dict[str, Any]) -> list[str]:
    lines = [
        f"### Mixed slow work: {data['workers']} workers, {data['rate']:g} new connections/s "
        f"for {data['seconds']:g} s, {1 - data['long_share']:.0%} `{data['short_path']}`, "
        f"{data['long_share']:.0%} `{data['long_path']}` ({count_rounds(data['rounds'])}: median "
        "(min to max))",
        "",
        "| setup | short p50 ms | short p99 ms | short p99 per round | long p50 ms per round "
        "| moved per round | failed |",
        "|---|--:|--:|--:|--:|--:|--:|",
    ]
    for label, r in data["setups"].items():
        rounds = r["rounds"]
        lines.append(
            f"| {label} | {_median_range(r['short_p50_ms'])} "
            f"| {_median_range(r['short_p99_ms'], 0)} | {_per_round(rounds, 'short_p99_ms')} "
            f"| {_per_round(rounds, 'long_p50_ms')} | {_per_round(rounds, 'moved')} "
            f"| {r['failed']} |"
        )
    lines += _setup_notes(data)
    if "p99_ratio" in data:
        verdict = "meets" if data["meets"] else "misses"
        rounds = ", ".join(f"{x:.3f}" for x in data["p99_ratio_rounds"])
        lines += [
            "",
            f"aioworker short p99 / uvicorn short p99: **{data['p99_ratio']:.3f}x** (round by "
            f"round: {rounds}). Goal: short p50 <= {data['goal_p50_ms']:g} ms and p99 <= "
            f"{data['goal_p99_ratio']:g}x uvicorn's: aioworker **{verdict}** it.",
        ]
    return lines


def memory_md(memory: dict[str, dict[str, list[float]]]) -> list[str]:
    phases: list[str] = []
    for by_phase in memory.values():
        phases += [p for p in by_phase if p not in phases]
    lines = [
        "### Memory: RSS per worker process, MiB",
        "",
        "| server | " + " | ".join(phases) + " |",
        "|---|" + "--:|" * len(phases),
    ]
    for label, by_phase in memory.items():
        cells = [
            ", ".join(f"{v:.1f}" for v in by_phase[p]) if p in by_phase else "-" for p in phases
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def tables(results: dict[str, Any]) -> list[str]:
    """One markdown table per scenario that ran, then the run's notes: stdout and docs share it."""
    lines: list[str] = []
    for key, render in (
        ("throughput", throughput_md),
        ("isolation", isolation_md),
        ("restart", restart_md),
        ("blocked", blocked_md),
        ("mixed", mixed_md),
        ("features", features_md),
        ("burst", burst_md),
        ("websocket", websocket_md),
    ):
        if key in results:
            lines += [*render(results[key]), ""]
    if results.get("memory"):
        lines += [*memory_md(results["memory"]), ""]
    notes = results["meta"]["notes"]
    if notes:
        lines += ["Notes:", "", *[f"- {n}" for n in notes], ""]
    return lines


def markdown(results: dict[str, Any]) -> str:
    meta = results["meta"]
    m = meta["machine"]
    lines = [
        f"Machine: {m['nproc']} CPUs ({m['cpu_model']}), Python {m['python']}, "
        f"load generator: {meta['load_generator']}; {meta['pinning']}; "
        f"revision {m.get('revision') or 'unknown'}.",
        f"Command: `{meta['command']}`",
        "",
        *tables(results),
    ]
    return "\n".join(lines)


def chart(isolation: dict[str, Any], path: Path) -> Path | None:
    """Bar chart of the isolation scenario: fast-route p99 and req/s, idle next to loaded."""
    setups = isolation["setups"]
    if not setups:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(setups)
    x = range(len(labels))
    width = 0.38
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, key, title in (
        (ax1, "p99", "fast route p99 latency (ms, log scale)"),
        (ax2, "rps", "fast route throughput (req/s)"),
    ):
        for offset, phase, color in (
            (-width / 2, "idle", "#4c9a2a"),
            (width / 2, "loaded", "#c0392b"),
        ):
            values = [
                setups[s][phase]["latency_ms"]["p99"] if key == "p99" else setups[s][phase]["rps"]
                for s in labels
            ]
            bars = ax.bar([i + offset for i in x], values, width, label=phase, color=color)
            ax.bar_label(bars, fmt="{:,.1f}" if key == "p99" else "{:,.0f}", fontsize=8)
        ax.set_xticks(list(x), labels)
        ax.set_title(title)
        if key == "p99":
            ax.set_yscale("log")
        ax.legend()
    fig.suptitle(f"Fast route while {isolation['slow_path']} is saturated")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def save(results: dict[str, Any]) -> list[Path]:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    written = []
    for name in (f"bench-{stamp}.json", "latest.json"):
        path = RESULTS / name
        path.write_text(json.dumps(results, indent=2) + "\n")
        written.append(path)
    if results.get("isolation"):
        try:
            png = chart(results["isolation"], RESULTS / "isolation.png")
        except ImportError:
            results["meta"]["notes"].append("no chart: matplotlib is not installed (bench extra)")
            png = None
        if png:
            written.append(png)
    return written


def describe_tool(builtin: bool) -> str:
    if tool_name(builtin) == "wrk":
        return "wrk, 1 thread"
    return (
        "built-in asyncio generator (one Python process on one core: near the ceiling's "
        "rate it measures itself as much as the server; latencies include its own loop delays)"
    )


def command_line() -> str:
    """The command as it can be typed again: arguments quoted for the shell (--note has spaces)."""
    return " ".join(["python -m benchmarks", *map(shlex.quote, sys.argv[1:])])
