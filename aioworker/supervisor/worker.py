"""The worker process: from the fork to serving its group's app on its inherited socket.

The master forks; the child calls `run(spec)`, which never returns. It resets the master's
signal handlers, closes the master's other descriptors, sets its environment and title, drops
privileges, imports the app and serves it under uvloop. It tells the master over a pipe when
it is ready (app imported, lifespan startup complete, accepting), or why it could not start.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import random
import signal
import sys
import traceback
from collections.abc import Callable
from typing import Any, NoReturn

from aioworker import logs
from aioworker.config import GroupSettings, TlsError, tls_context
from aioworker.importer import describe_error, import_from_string
from aioworker.supervisor import handover, queued
from aioworker.supervisor.hooks import WorkerContext, WorkerSpec
from aioworker.supervisor.process import (
    BOOT_ERROR,
    become_worker,
    die_with_master,
    set_title,
)

__all__ = ["build_app", "import_target", "run"]

log = logging.getLogger("aioworker.worker")


def run(spec: WorkerSpec, master: int) -> NoReturn:
    """Run the worker to completion and exit the process (never returns into the master's code).

    `master` is the master's pid: a worker whose master dies stops (see `die_with_master`)."""
    code = 1
    try:
        code = _run(spec, master)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # the worker must never unwind into the master's stack
        log.exception("worker %s[%d] crashed", spec.group.name, spec.slot)
    finally:
        logs.flush_std()
        os._exit(code)


def settle_heap() -> None:
    """Collect once, then freeze what is left: the interpreter's, the app's and the engine's
    start-up objects live as long as the worker, and a full collection no longer walks them.

    Measured in a web worker of a queue-fed setup (about 44,000 tracked objects after start-up):
    a full collection triggered by a burst of 400 requests paused the loop for 35 ms, which
    every request on that worker waited out."""
    gc.collect()
    gc.freeze()


def _notify(fd: int, line: str) -> None:
    with contextlib.suppress(OSError):
        os.write(fd, line.replace("\n", " ").encode("utf-8", "replace")[:1000] + b"\n")


def _run(spec: WorkerSpec, master: int) -> int:
    _reset_signals()
    # The engine bounds a drain by graceful_timeout; one second more, then SIGKILL.
    grace = spec.group.http.graceful_timeout + 1.0
    die_with_master(master, grace)
    logs.relay_in_worker()
    for fd in spec.close_fds:
        with contextlib.suppress(OSError):
            os.close(fd)
    group = spec.group
    set_title(f"aioworker: worker {group.name}[{spec.slot}]")
    try:
        # The engine and the loop are imported while still root: the interpreter's own files
        # may not be readable by the worker's user (a Python installed under /root).
        _preimport(group)
        if become_worker(spec.config, group, spec.slot) is not None:
            die_with_master(master, grace)  # the kernel forgets it on a change of user
        base = str(spec.config.base_dir)
        if base not in sys.path:
            sys.path.insert(0, base)
        target = build_app(group, spec.app if spec.app is not None else import_target(group))
    except Exception as exc:
        log.error(
            "worker %s[%d] failed to start:\n%s",
            group.name,
            spec.slot,
            "".join(traceback.format_exception(exc)).rstrip(),
        )
        _notify(spec.notify_fd, f"error {describe_error(exc)}")
        return BOOT_ERROR
    loop = _new_loop()
    try:
        return loop.run_until_complete(_serve(spec, loop, target))
    finally:
        loop.close()


def _preimport(group: GroupSettings) -> None:
    import importlib

    for name in (
        "uvloop",
        "aioworker.http.server" if not group.main else "asyncio",
        "aioworker.logs",
    ):
        with contextlib.suppress(ImportError):
            importlib.import_module(name)


def _call_hooks(spec: WorkerSpec, name: str, ctx: WorkerContext) -> None:
    for hook in spec.hooks:
        try:
            getattr(hook, name)(ctx)
        except Exception:
            log.exception("hook %s.%s failed", type(hook).__name__, name)


def _summary(exc: BaseException) -> str:
    return "".join(traceback.format_exception_only(type(exc), exc)).strip()


def _reset_signals() -> None:
    signal.set_wakeup_fd(-1)
    for sig in (signal.SIGTERM, signal.SIGQUIT, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    # HUP and TTIN/TTOU are the master's; their default actions would stop or kill a worker.
    # So is INT: Ctrl-C in a terminal reaches the whole foreground process group, master and
    # workers at once, and only the master decides (TERM for the first, QUIT for the second).
    for sig in (signal.SIGHUP, signal.SIGINT, signal.SIGTTIN, signal.SIGTTOU, signal.SIGUSR1):
        signal.signal(sig, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())


def import_target(group: GroupSettings) -> Any:
    """Import the group's app (or factory, or main coroutine function); `preload` does this
    once in the master."""
    target = import_from_string(group.main or group.app)
    if not callable(target):
        raise TypeError(f"{group.main or group.app} is not callable")
    return target


def build_app(group: GroupSettings, target: Any) -> Any:
    """In the worker: call the factory, then wrap the app for strict routes."""
    if group.main:
        return target
    app = target() if group.factory else target
    if not callable(app):
        raise TypeError(f"{group.app}() did not return an ASGI app (not callable)")
    if group.strict_routes and group.routes:
        # Front door: answer 404 outside the group's routes (frontdoor/routes.py).
        from aioworker.frontdoor.routes import strict_routes

        app = strict_routes(app, group.routes)
    return app


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        loop = asyncio.new_event_loop()
    else:
        loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    return loop


async def _serve(spec: WorkerSpec, loop: asyncio.AbstractEventLoop, target: Any) -> int:
    group = spec.group
    stop = asyncio.Event()

    def fast_exit() -> None:
        logs.flush_std()
        os._exit(0)

    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGQUIT, fast_exit)

    def reopen() -> None:
        try:
            logs.reopen()
        except OSError as exc:
            # A worker that dropped privileges may not open the master's log file.
            log.warning(
                "worker %s[%d] cannot reopen the log file: %s; it keeps the old one",
                group.name,
                spec.slot,
                exc.strerror,
            )

    loop.add_signal_handler(signal.SIGUSR1, reopen)

    def notify(line: str) -> None:
        if line == "ready":  # every kind of worker says it once, with its app loaded
            settle_heap()
        _notify(spec.notify_fd, line)

    if group.main:
        return await _run_main(spec, loop, target, stop, notify)
    if group.queue:
        return await queued.run_consumer(
            spec, loop, target, stop, notify, lambda ctx: _call_hooks(spec, "worker_started", ctx)
        )
    target = queued.relay_app(spec.config, group, target)

    from aioworker.http.server import Server

    try:
        # Read now, in each new worker: a reload (HUP) serves renewed certificate files.
        tls = tls_context(group, spec.config.base_dir)
    except TlsError as exc:
        log.error("worker %s[%d] failed to start: %s", group.name, spec.slot, exc)
        notify(f"error groups.{group.name}.{exc.key}: {exc}")
        return BOOT_ERROR
    server = Server(target, group.http, ssl=tls)
    try:
        await server.startup()
        assert spec.sock is not None
        await server.start([spec.sock])
    except Exception as exc:
        log.error("worker %s[%d] failed to start: %s", group.name, spec.slot, exc)
        notify(f"error {_summary(exc)}")
        return BOOT_ERROR
    if spec.handover is not None:
        channel = spec.handover
        channel.setblocking(False)

        def adopt() -> None:
            for connection in handover.receive(channel):
                server.adopt(connection)

        loop.add_reader(channel.fileno(), adopt)
    ctx = WorkerContext(spec, loop, server, notify)
    _call_hooks(spec, "worker_started", ctx)
    if group.max_requests:
        _watch_requests(ctx, group.max_requests + random.randint(0, group.max_requests_jitter))
    notify("ready")
    await stop.wait()
    server.close()
    log.info("draining group=%s slot=%d pid=%d", group.name, spec.slot, os.getpid())
    _call_hooks(spec, "worker_draining", ctx)
    try:
        # The engine bounds the drain by graceful_timeout; this is a last resort.
        await asyncio.wait_for(server.wait_closed(), group.http.graceful_timeout + 5.0)
    except asyncio.TimeoutError:
        log.warning("worker %s[%d] did not drain in time", group.name, spec.slot)
    await queued.close_relay(target)
    return 0


def _watch_requests(ctx: WorkerContext, limit: int) -> None:
    """Ask the master for a replacement once `limit` requests were served (it drains us)."""

    def check() -> None:
        if ctx.server.state.requests >= limit:
            ctx.notify("recycle max_requests")
        else:
            ctx.loop.call_later(0.5, check)

    ctx.loop.call_later(0.5, check)


async def _run_main(
    spec: WorkerSpec,
    loop: asyncio.AbstractEventLoop,
    fn: Callable[[], Any],
    stop: asyncio.Event,
    notify: Callable[[str], None],
) -> int:
    """A `main` group: supervise one coroutine; TERM cancels it within graceful_timeout."""
    task = loop.create_task(fn())
    ctx = WorkerContext(spec, loop, None, notify)
    _call_hooks(spec, "worker_started", ctx)
    notify("ready")
    stopper = loop.create_task(stop.wait())
    await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        stopper.cancel()
        exc = task.exception()
        if exc is not None:
            log.error("%s failed", spec.group.main, exc_info=exc)
            return 1
        log.info("%s returned", spec.group.main)
        return 0
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, asyncio.TimeoutError):
        await asyncio.wait_for(task, spec.group.http.graceful_timeout)
    return 0
