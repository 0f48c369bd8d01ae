"""Scenario features: what each option a user turns on costs, against plain aioworker, same run.

Every setup is a master with one worker serving hello world (benchmarks/apps.py), started by
`benchmarks/launch.py --master --config` from a config.toml that differs from the plain one by
one option; they take turns (benchmarks/turns.py) and each is compared round by round with the
plain one: "0.93x (0.90-0.95)" is its req/s over plain's, and the CPU microseconds per request
of the whole server (master and worker, /proc/PID/stat) show where the cost goes. The tls
setup serves https:// with a self-signed certificate made for the run by the openssl command.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
from pathlib import Path
from typing import Any

from benchmarks import servers
from benchmarks.context import Context
from benchmarks.procs import Server, free_port
from benchmarks.ratios import cpu_us_per_request, format_ratio, ratio_spread
from benchmarks.turns import Starter, take_turns
from benchmarks.wrk import Load

# label -> (config lines of the group, log level, Observability hook, request headers, what it is)
SETUPS: dict[str, tuple[tuple[str, ...], str, bool, tuple[tuple[str, str], ...], str]] = {
    "plain": ((), "warning", False, (), "no option, no master hook"),
    "access-log": (
        ("access_log = true",),
        "info",  # access lines are logged at info: at warning they would be filtered out
        False,
        (),
        '`access_log = true`, `log_level = "info"` (lines to the server\'s stdout, a file)',
    ),
    "proxy-headers": (
        ('forwarded_allow_ips = ["127.0.0.1"]',),
        "warning",
        False,
        (("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Proto", "https")),
        '`forwarded_allow_ips = ["127.0.0.1"]`, each request with X-Forwarded-For and -Proto',
    ),
    "scoreboard": ((), "warning", True, (), "the Observability hook: scoreboard, heartbeat"),
    "max-requests": (
        ("max_requests = 1000000000",),
        "warning",
        False,
        (),
        "`max_requests` set (too high to recycle during the run: the cost of counting)",
    ),
    "tls": (
        (),  # certfile and keyfile: made per run (_certificate)
        "warning",
        False,
        (),
        "an https:// listen, EC P-256 certificate; the load keeps its 64 connections open, "
        "so this is the cost of encryption per request, not of handshakes",
    ),
}
HTTPS = frozenset({"tls"})  # the setups that listen on https://
OPENSSL = shutil.which("openssl")


def _certificate(directory: Path) -> tuple[str, ...]:
    """The config lines of a self-signed certificate made in `directory` for 127.0.0.1 (the
    load generator does not verify it)."""
    cert, key = directory / "bench.crt", directory / "bench.key"
    command = [OPENSSL or "openssl", "req", "-x509", "-nodes", "-days", "1", "-subj", "/CN=bench"]
    command += ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
    subprocess.run(
        [*command, "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True
    )
    return (f'certfile = "{cert}"', f'keyfile = "{key}"')


def _starter(ctx: Context, label: str) -> Starter:
    options, level, observe, _, _ = SETUPS[label]

    https = label in HTTPS

    def start(directory: Path) -> Server:
        port = free_port()
        config = servers.aioworker_config(
            directory,
            {"web": (port, 1, ["/"])},
            servers.HELLO_APP,
            options=options + _certificate(directory) if https else options,
            log_level=level,
            scheme="https" if https else "http",
        )
        argv = [servers.PY, "-m", "benchmarks.launch", servers.HELLO_APP, "--master"]
        argv += ["--config", str(config), *(["--observe"] if observe else [])]
        server = Server(
            f"aioworker-{label}",
            argv,
            [port],
            ctx.server_cpus,
            cwd=str(servers.ROOT),
            env=servers.env(),
            tls=https,
        )
        server.wait_ready(workers=1)
        return server

    return start


def run(ctx: Context) -> dict[str, Any]:
    rounds, seconds = (1, 2.0) if ctx.quick else (5, 3.0)
    labels = list(SETUPS)
    if ctx.builtin:
        ctx.note("features: the built-in load generator sends no forwarded headers")
    if ctx.builtin or OPENSSL is None:
        # The built-in generator speaks plain HTTP only; the certificate needs openssl.
        ctx.note("features: tls not measured: it needs wrk and the openssl command")
        labels = [label for label in labels if label not in HTTPS]

    def measure(_number: int, label: str, server: Server) -> dict[str, Any]:
        headers = SETUPS[label][3]
        scheme = "https" if label in HTTPS else "http"
        before = server.cpu_seconds()
        result = ctx.load(
            Load(f"{scheme}://127.0.0.1:{server.ports[0]}/", 64, seconds, headers=headers)
        )
        result["cpu_us_per_req"] = cpu_us_per_request(
            server.cpu_seconds() - before, result["requests"]
        )
        return result

    def describe(figures: dict[str, Any]) -> str:
        return f"{figures['rps']:>10,.0f} req/s  cpu {figures['cpu_us_per_req']} us/req"

    runs = take_turns(
        ctx,
        "features",
        [(label, _starter(ctx, label)) for label in labels],
        rounds,
        measure,
        describe,
    )
    return {"setups": summarise(runs), "rounds": rounds, "seconds": seconds}


def summarise(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """label -> median req/s and CPU us/req over its rounds, and its req/s over plain's."""
    plain = [r["rps"] for r in runs.get("plain", [])]
    out: dict[str, Any] = {}
    for label, rounds in runs.items():
        cpu = [r["cpu_us_per_req"] for r in rounds if r["cpu_us_per_req"] is not None]
        out[label] = {
            "what": SETUPS[label][4] if label in SETUPS else label,
            "rps": round(statistics.median(r["rps"] for r in rounds), 1),
            "cpu_us_per_req": round(statistics.median(cpu), 1) if cpu else None,
            "vs_plain": None
            if label == "plain"
            else ratio_spread([r["rps"] for r in rounds], plain),
            "failed": sum(r["failed"] for r in rounds),
        }
    return out


def features_md(data: dict[str, Any]) -> list[str]:
    setups = data["setups"]
    plain_cpu = setups.get("plain", {}).get("cpu_us_per_req")
    lines = [
        f"### Feature cost: hello world, master + 1 worker, median of {data['rounds']} runs of "
        f"{data['seconds']:g} s each",
        "",
        "| setup | req/s | vs plain (per round) | CPU us/req | CPU over plain | failed | what |",
        "|---|--:|--:|--:|--:|--:|---|",
    ]
    for label, r in setups.items():
        cpu = r["cpu_us_per_req"]
        extra = (
            "-"
            if cpu is None or plain_cpu is None or label == "plain"
            else f"{cpu - plain_cpu:+.1f}"
        )
        lines.append(
            f"| {label} | {r['rps']:,.0f} | {format_ratio(r['vs_plain'])} "
            f"| {'-' if cpu is None else f'{cpu:.1f}'} | {extra} | {r['failed']} | {r['what']} |"
        )
    return lines
