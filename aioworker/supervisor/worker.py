"""The worker process: from the fork to serving its group's app on its inherited socket.

The master forks; the child calls `run(spec)`, which never returns. It resets the master's
signal handlers, closes the master's other descriptors, sets its environment and title, drops
privileges, imports the app and serves it under uvloop. It tells the master over a pipe when
it is ready (app imported, lifespan startup complete, accepting), or why it could not start.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import logging
import os
import pwd
import random
import signal
import socket
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

from aioworker.config import Config, GroupSettings
from aioworker.importer import import_from_string
from aioworker.supervisor.hooks import Hook

__all__ = [
    "BOOT_ERROR",
    "WorkerContext",
    "WorkerSpec",
    "build_app",
    "import_target",
    "resolve_ids",
    "run",
]

log = logging.getLogger("aioworker.worker")

# Exit status of a worker that could not start (import error, lifespan failure, bad user).
BOOT_ERROR = 3


@dataclass(slots=True)
class WorkerSpec:
    """Everything a forked worker needs, prepared by the master before the fork."""

    config: Config
    group: GroupSettings
    slot: int
    sock: socket.socket | None
    notify_fd: int  # write end of the pipe the master reads readiness from
    close_fds: Sequence[int] = ()  # the master's descriptors this worker must not keep
    app: Any = None  # the app imported in the master (preload)
    hooks: Sequence[Hook] = ()
    extra: dict[str, Any] = field(default_factory=dict)  # filled by Hook.before_spawn


@dataclass(slots=True)
class WorkerContext:
    """What a hook sees inside a running worker."""

    spec: WorkerSpec
    loop: asyncio.AbstractEventLoop
    server: Any  # aioworker.http.server.Server, or None for a `main` group
    notify: Callable[[str], None]  # send one line to the master
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def group(self) -> GroupSettings:
        return self.spec.group

    @property
    def slot(self) -> int:
        return self.spec.slot


def run(spec: WorkerSpec) -> NoReturn:
    """Run the worker to completion and exit the process (never returns into the master's code)."""
    code = 1
    try:
        code = _run(spec)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # the worker must never unwind into the master's stack
        log.exception("worker %s[%d] crashed", spec.group.name, spec.slot)
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)


def _notify(fd: int, line: str) -> None:
    with contextlib.suppress(OSError):
        os.write(fd, line.replace("\n", " ").encode("utf-8", "replace")[:1000] + b"\n")


def _run(spec: WorkerSpec) -> int:
    _reset_signals()
    for fd in spec.close_fds:
        with contextlib.suppress(OSError):
            os.close(fd)
    group = spec.group
    os.environ["AIOWORKER_GROUP"] = group.name
    os.environ["AIOWORKER_WORKER"] = str(spec.slot)
    os.environ.update(dict(group.env))
    _set_title(f"aioworker: worker {group.name}[{spec.slot}]")
    try:
        # The engine and the loop are imported while still root: the interpreter's own files
        # may not be readable by the worker's user (a Python installed under /root).
        _preimport(group)
        uid_gid = resolve_ids(
            group.user or spec.config.server.user, group.group or spec.config.server.group
        )
        if uid_gid is not None:
            drop_privileges(*uid_gid)
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
        _notify(spec.notify_fd, f"error {_summary(exc)}")
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
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    # HUP and TTIN/TTOU are the master's; their default actions would stop or kill a worker.
    for sig in (signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU, signal.SIGUSR1):
        signal.signal(sig, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())


def _set_title(title: str) -> None:
    try:
        import setproctitle
    except ImportError:
        return
    setproctitle.setproctitle(title)


def resolve_ids(user: str, group: str) -> tuple[int, int, str] | None:
    """(uid, gid, user name) to switch to, or None to stay as is; KeyError names what is unknown."""
    if not user and not group:
        return None
    if user:
        try:
            entry = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
        except KeyError:
            raise KeyError(f"no such user {user!r}") from None
        uid, gid, name = entry.pw_uid, entry.pw_gid, entry.pw_name
    else:
        uid, gid, name = os.getuid(), os.getgid(), ""
    if group:
        try:
            gid = grp.getgrgid(int(group)).gr_gid if group.isdigit() else grp.getgrnam(group).gr_gid
        except KeyError:
            raise KeyError(f"no such group {group!r}") from None
    return uid, gid, name


def drop_privileges(uid: int, gid: int, name: str) -> None:
    """Switch to uid/gid with the user's supplementary groups (root only; else a no-op)."""
    if os.getuid() != 0:
        if (uid, gid) != (os.getuid(), os.getgid()):
            log.warning("not running as root: user/group settings ignored")
        return
    if name:
        os.initgroups(name, gid)
    else:
        os.setgroups([gid])
    os.setgid(gid)
    os.setuid(uid)
    if name:
        entry = pwd.getpwuid(uid)
        os.environ.update(USER=name, LOGNAME=name, HOME=entry.pw_dir)


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
        # Front door: answer 404 outside the group's routes (aioworker/routes.py).
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
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(0)

    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGQUIT, fast_exit)
    loop.add_signal_handler(signal.SIGINT, fast_exit)

    def reopen() -> None:
        from aioworker import logs

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
        _notify(spec.notify_fd, line)

    if group.main:
        return await _run_main(spec, loop, target, stop, notify)

    from aioworker.http.server import Server

    server = Server(target, group.http)
    try:
        await server.startup()
        assert spec.sock is not None
        await server.start([spec.sock])
    except Exception as exc:
        log.error("worker %s[%d] failed to start: %s", group.name, spec.slot, exc)
        notify(f"error {_summary(exc)}")
        return BOOT_ERROR
    ctx = WorkerContext(spec, loop, server, notify)
    _call_hooks(spec, "worker_started", ctx)
    if group.max_requests:
        _watch_requests(ctx, group.max_requests + random.randint(0, group.max_requests_jitter))
    _watch_parent(loop, stop)
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
    return 0


def _watch_parent(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    """Drain and exit when the master is gone (re-parented), instead of serving orphaned."""
    parent = os.getppid()

    def check() -> None:
        if os.getppid() != parent:
            log.warning("the master (pid %d) is gone; stopping", parent)
            stop.set()
        else:
            loop.call_later(1.0, check)

    loop.call_later(1.0, check)


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
    _watch_parent(loop, stop)
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
