"""Process facts both the master and its workers rely on: exit codes, ids, privileges, titles.

The master reads a worker's exit status with `describe_exit`; the worker exits with
`BOOT_ERROR` when it cannot start; `check` and the worker resolve users and groups the same
way. Keeping these here lets the master's modules and the worker's share them without
importing each other.
"""

from __future__ import annotations

import ctypes
import grp
import logging
import os
import pwd
import signal
import threading

from aioworker.config import Config, GroupSettings
from aioworker.config.envfile import read_env_file

__all__ = [
    "BOOT_ERROR",
    "become_worker",
    "describe_exit",
    "die_with_master",
    "drop_privileges",
    "resolve_ids",
    "set_title",
    "start_lifeline",
]

log = logging.getLogger("aioworker.worker")

# Exit status of a worker that could not start (import error, lifespan failure, bad user).
BOOT_ERROR = 3


def describe_exit(status: int, killed_by_master: bool = False) -> str:
    """How a process died, in words, from a waitpid status."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        if sig == signal.SIGKILL and not killed_by_master:
            return "killed by SIGKILL, perhaps out of memory"
        return f"killed by {name}"
    if os.WIFEXITED(status):
        code = os.WEXITSTATUS(status)
        if code == BOOT_ERROR:
            return f"exited with code {code} (could not start)"
        return f"exited with code {code}"
    return f"ended with status {status}"


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


def become_worker(config: Config, group: GroupSettings, slot: int) -> tuple[int, int, str] | None:
    """Take a worker's identity: its environment, then its group's user and group (the worker
    and the import check both call this, so an import does the same in either). Returns the
    (uid, gid, name) switched to; KeyError names an unknown user or group, ValueError a bad
    env_file (`server.env_file: problem` or `groups.NAME.env_file: problem`)."""
    os.environ["AIOWORKER_GROUP"] = group.name
    os.environ["AIOWORKER_WORKER"] = str(slot)
    for key, name in (
        ("server.env_file", config.server.env_file),
        (f"groups.{group.name}.env_file", group.env_file),
    ):
        if name:  # as root still: the file may be readable by root alone
            try:
                os.environ.update(read_env_file(config.resolve(name)))
            except ValueError as exc:
                raise ValueError(f"{key}: {exc}") from None
    os.environ.update(dict(group.env))
    ids = resolve_ids(group.user or config.server.user, group.group or config.server.group)
    if ids is not None:
        drop_privileges(*ids)
    return ids


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


def set_title(title: str) -> None:
    """Name this process in ps/top when setproctitle is installed (the `title` extra)."""
    try:
        import setproctitle
    except ImportError:
        return
    setproctitle.setproctitle(title)


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>

# The read end of the master's lifeline pipe; the master alone holds the write end, so the
# read end sees EOF the moment the master dies, however it dies (kill -9 included).
_lifeline = -1


def start_lifeline() -> int:
    """In the master, before forking workers: the pipe `die_with_master` watches in each worker.
    Returns the write end, which the master keeps and every worker must close."""
    global _lifeline
    _lifeline, write_fd = os.pipe()
    return write_fd


def die_with_master(master: int, grace: float) -> None:
    """In a worker: end when the master `master` dies, even while the app blocks the loop.

    The kernel sends SIGTERM when the parent dies (PR_SET_PDEATHSIG; cleared by a change of
    credentials, so call this again after dropping privileges); a master that died before
    that is caught by the parent pid check. SIGTERM drains gracefully only if the event loop
    runs: a thread blocked on the lifeline pipe (no polling, no GIL held) wakes at the
    master's death and, `grace` seconds later, sends SIGKILL, which no Python code can delay.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):  # no prctl: the lifeline alone does it
        pass
    if os.getppid() != master:  # the master died before the kernel watched it for us
        os.kill(os.getpid(), signal.SIGTERM)
    if _lifeline >= 0 and not any(t.name == "aioworker-lifeline" for t in threading.enumerate()):
        threading.Thread(
            target=_watch_lifeline,
            args=(_lifeline, master, grace),
            name="aioworker-lifeline",
            daemon=True,
        ).start()


def _watch_lifeline(fd: int, master: int, grace: float) -> None:
    try:
        while os.read(fd, 1):
            pass
    except OSError:
        pass
    log.warning("the master (pid %d) is gone; stopping (killed in %.1fs if not)", master, grace)
    os.kill(os.getpid(), signal.SIGTERM)
    threading.Event().wait(grace)
    os.kill(os.getpid(), signal.SIGKILL)
