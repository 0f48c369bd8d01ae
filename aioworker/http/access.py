"""The access log: one line per answered request, in the format `access_log_format` names.

Built once per server and only when `access_log` is on, so a server without it pays nothing
per request. The format is compiled once into a function that computes only the fields it
uses: for a template of plain `%(field)s` (the named formats are), one `%` on a tuple, 4.7 us
against 7.9 us for a dict of every field and `template % dict` (timeit, default format).

With aioworker's own logging setup (`aioworker.logs.setup`: one handler, its format), the
lines are laid out here the way that handler would and written in batches, one write per
event-loop turn: a record through logging costs ~50 us (LogRecord, the caller's frame,
Formatter), a hello-world request ~50 us in all. When the embedding program configured logging
its own way (other handlers, filters, formats), every line goes through logging as a record.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from collections.abc import Callable
from typing import Any, Final, Protocol

from aioworker._types import HTTPScope
from aioworker.config.accesslog import parse_format
from aioworker.logs import hold_back, own_handler

__all__ = ["AccessLog", "Answered"]

logger = logging.getLogger("aioworker.access")

# What a client controls is escaped as nginx escapes it (`"`, `\`, controls, non-ASCII -> \xHH):
# a quote cannot end a field early, a newline cannot start a forged line.
_UNSAFE: Final = re.compile(rb'[\x00-\x1f"\\\x7f-\xff]')
_HEADERS: Final = {"host": b"host", "referer": b"referer", "user_agent": b"user-agent"}
# Each field's expression over the locals the compiled function sets: cycle, elapsed, scope,
# and those named with it (set by _LOCALS' statements, in that order).
_FIELDS: Final[dict[str, tuple[str, tuple[str, ...]]]] = {
    "client": ('f"{client[0]}:{client[1]}" if client else "-"', ("client",)),
    "remote_addr": ('client[0] if client else "-"', ("client",)),
    "method": ("cycle.method", ()),
    "target": ("target", ("raw_path", "query", "target")),
    "path": ("_escape(raw_path)", ("raw_path",)),
    "query": ("_escape(query)", ("query",)),
    "protocol": ('"HTTP/" + scope["http_version"]', ()),
    "request_line": (
        "f\"{cycle.method} {target} HTTP/{scope['http_version']}\"",
        ("raw_path", "query", "target"),
    ),
    "status": ("str(cycle.status)", ()),
    "size": ("str(size)", ("size",)),
    "size_clf": ('str(size) if size else "-"', ("size",)),
    "duration_ms": ('f"{elapsed * 1000:.1f}"', ()),
    "time": ("self.clf_time()", ()),
    "host": ("host", ("headers",)),
    "referer": ("referer", ("headers",)),
    "user_agent": ("user_agent", ("headers",)),
}
_LOCALS: Final = {
    "client": 'client = scope["client"]',
    "raw_path": 'raw_path = scope["raw_path"]',
    "query": 'query = scope["query_string"]',
    "target": 'target = _escape(raw_path + b"?" + query if query else raw_path)',
    "size": "size = cycle.sent_length",
}
# The conversions of a %-template: one whose every conversion is %(field)s is formatted from a
# tuple in field order; a width, a flag or another type leaves it to the dict.
_TOKEN: Final = re.compile(r"%%|%\((\w+)\)s|%")
# Month names as the common log format writes them, whatever the process's locale.
_MONTHS: Final = "JanFebMarAprMayJunJulAugSepOctNovDec"
# A write of up to PIPE_BUF bytes to a pipe is atomic: in daemon mode the workers' output
# shares the master's relay pipe, and a longer write could interleave with another worker's.
_PIPE_BUF: Final = 4096


class Answered(Protocol):
    """An answered request as the access log reads it (a cycle.RequestCycle)."""

    @property
    def scope(self) -> HTTPScope: ...
    @property
    def method(self) -> str: ...
    @property
    def status(self) -> int: ...
    @property
    def sent_length(self) -> int: ...


def _escape(value: bytes) -> str:
    if _UNSAFE.search(value) is None:
        return value.decode("ascii")
    return _UNSAFE.sub(lambda m: b"\\x%02X" % m[0][0], value).decode("ascii")


def _clf_time(second: int) -> str:
    t = time.localtime(second)
    month = _MONTHS[3 * t.tm_mon - 3 : 3 * t.tm_mon]
    return f"[{t.tm_mday:02d}/{month}/{t.tm_year}:{time.strftime('%H:%M:%S %z', t)}]"


Line = Callable[["AccessLog", Answered, float], Any]


def _compile(style: str, template: str, fields: frozenset[str]) -> tuple[Line, str | None]:
    """`(function, tuple template)` for a checked format. The function of (access log, cycle,
    elapsed) returns the tuple of the fields in template order when a tuple template is given
    (`template % tuple` is the line), else the dict of the fields the template uses.

    Generated source, as dataclasses and namedtuple do: only the fixed expressions of _FIELDS
    and _LOCALS go into it; the template's text stays data.
    """
    order: list[str] = []
    parts: list[str] = []
    plain = style == "%"
    position = 0
    for token in _TOKEN.finditer(template) if plain else ():
        parts.append(template[position : token.start()])
        position = token.end()
        if token[0] == "%%":
            parts.append("%%")
        elif token[1] is None:
            plain = False  # %5s, %r ...: formatted through the dict
            break
        else:
            order.append(token[1])
            parts.append("%s")
    parts.append(template[position:])
    used = order if plain else sorted(fields)
    needed = {local for name in used for local in _FIELDS[name][1]}
    body = ["scope = cycle.scope"]
    body += [statement for local, statement in _LOCALS.items() if local in needed]
    headers = [name for name in _HEADERS if name in used]
    if headers:  # the last line of a repeated header wins, as in the scope's list
        body += [f'{name} = "-"' for name in headers]
        body.append('for name, value in scope["headers"]:')
        for index, name in enumerate(headers):
            body.append(f"    {'elif' if index else 'if'} name == {_HEADERS[name]!r}:")
            body.append(f"        {name} = _escape(value)")
    if plain:
        body.append(f"return ({''.join(f'{_FIELDS[name][0]}, ' for name in order)})")
    else:
        body.append(f"return {{{', '.join(f'{n!r}: {_FIELDS[n][0]}' for n in used)}}}")
    source = "def line(self, cycle, elapsed):\n" + "".join(f"    {line}\n" for line in body)
    namespace: dict[str, Any] = {"_escape": _escape}
    exec(compile(source, "<access_log_format>", "exec"), namespace)
    return namespace["line"], "".join(parts) if plain else None


class AccessLog:
    """Formats and logs the line of one answered request."""

    __slots__ = (
        "__weakref__",  # logs.hold_back keeps a weak reference
        "_clf",
        "_clf_second",
        "_handler",
        "_line",
        "_lines",
        "_loop",
        "_prefix",
        "_second",
        "_tag",
        "_tuple_template",
        "fields",
        "style",
        "template",
    )

    def __init__(
        self, access_log_format: str, loop: asyncio.AbstractEventLoop | None = None
    ) -> None:
        self.style, self.template, self.fields = parse_format(access_log_format)
        self._line, self._tuple_template = _compile(self.style, self.template, self.fields)
        self._loop = loop  # None: every line through logging (no loop to batch on)
        self._handler: logging.StreamHandler[Any] | None = None  # the current batch's
        self._lines: list[str] = []  # the current batch
        self._tag = ""  # " [pid] INFO aioworker.access: ", fixed per batch
        self._second = -1  # the second `_prefix` names: both change once a second
        self._prefix = ""
        self._clf_second = -1
        self._clf = ""
        hold_back(self)  # a fast stop (SIGQUIT) or a crash writes the batch before exiting

    def log(self, cycle: Answered, elapsed: float) -> None:
        if not logger.isEnabledFor(logging.INFO):
            return
        message = self.message(cycle, elapsed)
        lines = self._lines
        if not lines:
            # The first line of a batch: whether logging is ours is decided once per batch,
            # so a program that reconfigures logging meanwhile is heard at the next turn.
            loop = self._loop
            handler = self._handler = own_handler(logger) if loop is not None else None
            if handler is None or loop is None:
                logger.info("%s", message)
                return
            name = logging.getLevelName(logging.INFO)
            self._tag = f" [{os.getpid()}] {name} {logger.name}: "
            loop.call_soon(self.flush)
        # The record's time as logging.Formatter writes it: local, then milliseconds cut.
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
        lines.append(f"{self._prefix},{int((now - second) * 1000):03d}{self._tag}{message}\n")

    def flush(self) -> None:
        """Write the batch: one write per PIPE_BUF bytes of whole lines, under the handler's
        lock (a thread of the app may log through the same handler)."""
        lines = self._lines
        handler = self._handler
        if not lines or handler is None:
            return
        self._lines = []
        chunks: list[str] = []
        chunk: list[str] = []
        size = 0
        for line in lines:
            length = len(line) if line.isascii() else len(line.encode())
            if chunk and size + length > _PIPE_BUF:
                chunks.append("".join(chunk))
                chunk, size = [], 0
            chunk.append(line)
            size += length
        chunks.append("".join(chunk))
        handler.acquire()
        try:
            stream = handler.stream
            for text in chunks:
                stream.write(text)
                stream.flush()
        except Exception:  # a full disk, a closed stream: lines lost, never a request
            pass
        finally:
            handler.release()

    def message(self, cycle: Answered, elapsed: float) -> str:
        """The line of an answered request, as the format lays it out."""
        made = self._line(self, cycle, elapsed)
        line: str
        if self._tuple_template is not None:
            line = self._tuple_template % made
        elif self.style == "%":
            line = self.template % made
        else:
            line = self.template.format_map(made)
        return line

    def clf_time(self) -> str:
        """The `time` field: the current second, worked out once a second."""
        second = int(time.time())
        if second != self._clf_second:
            self._clf_second = second
            self._clf = _clf_time(second)
        return self._clf
