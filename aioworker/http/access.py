"""The access log: one line per answered request, in the format `access_log_format` names.

Built once per server and only when `access_log` is on, so a server without it pays nothing
per request. Only the header scans and the time are skipped when the format does not use them.

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
from typing import Any, Final, Protocol

from aioworker._types import HTTPScope
from aioworker.config.accesslog import parse_format
from aioworker.logs import own_handler

__all__ = ["AccessLog", "Answered"]

logger = logging.getLogger("aioworker.access")

# What a client controls is escaped as nginx escapes it (`"`, `\`, controls, non-ASCII -> \xHH):
# a quote cannot end a field early, a newline cannot start a forged line.
_UNSAFE: Final = re.compile(rb'[\x00-\x1f"\\\x7f-\xff]')
_HEADERS: Final = {"host": b"host", "referer": b"referer", "user_agent": b"user-agent"}
_CLIENT: Final = frozenset({"client", "remote_addr"})
_REQUEST: Final = frozenset({"target", "path", "query", "protocol", "request_line"})
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


class AccessLog:
    """Formats and logs the line of one answered request."""

    __slots__ = (
        "_clf",
        "_clf_second",
        "_handler",
        "_lines",
        "_loop",
        "_prefix",
        "_second",
        "_tag",
        "fields",
        "headers",
        "style",
        "template",
    )

    def __init__(
        self, access_log_format: str, loop: asyncio.AbstractEventLoop | None = None
    ) -> None:
        self.style, self.template, self.fields = parse_format(access_log_format)
        # The request headers the format uses, as the scope names them -> field.
        self.headers = {_HEADERS[name]: name for name in self.fields & _HEADERS.keys()}
        self._loop = loop  # None: every line through logging (no loop to batch on)
        self._handler: logging.StreamHandler[Any] | None = None  # the current batch's
        self._lines: list[str] = []  # the current batch
        self._tag = ""  # " [pid] INFO aioworker.access: ", fixed per batch
        self._second = -1  # the second `_prefix` names: both change once a second
        self._prefix = ""
        self._clf_second = -1
        self._clf = ""

    def log(self, cycle: Answered, elapsed: float) -> None:
        if not logger.isEnabledFor(logging.INFO):
            return
        values = self.values(cycle, elapsed)
        lines = self._lines
        if not lines:
            # The first line of a batch: whether logging is ours is decided once per batch,
            # so a program that reconfigures logging meanwhile is heard at the next turn.
            loop = self._loop
            handler = self._handler = own_handler(logger) if loop is not None else None
            if handler is None or loop is None:
                if self.style == "%":  # the fields as the mapping: formatted only if handled
                    logger.info(self.template, values)
                else:
                    logger.info("%s", self.template.format_map(values))
                return
            name = logging.getLevelName(logging.INFO)
            self._tag = f" [{os.getpid()}] {name} {logger.name}: "
            loop.call_soon(self.flush)
        message = self.template % values if self.style == "%" else self.template.format_map(values)
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

    def values(self, cycle: Answered, elapsed: float) -> dict[str, str]:
        """The fields this format uses (and the cheap ones, whether used or not), as strings."""
        fields = self.fields
        scope = cycle.scope
        method = cycle.method
        size = cycle.sent_length
        values = {
            "method": method,
            "status": str(cycle.status),
            "size": str(size),
            "size_clf": str(size) if size else "-",
            "duration_ms": f"{elapsed * 1000:.1f}",
        }
        if not fields.isdisjoint(_CLIENT):
            client = scope["client"]
            values["client"] = f"{client[0]}:{client[1]}" if client else "-"
            values["remote_addr"] = client[0] if client else "-"
        if not fields.isdisjoint(_REQUEST):
            raw_path = scope["raw_path"]
            query = scope["query_string"]
            target = _escape(raw_path + b"?" + query if query else raw_path)
            protocol = "HTTP/" + scope["http_version"]
            values["target"] = target
            values["protocol"] = protocol
            values["request_line"] = f"{method} {target} {protocol}"
            if "path" in fields:
                values["path"] = _escape(raw_path)
            if "query" in fields:
                values["query"] = _escape(query)
        if "time" in fields:
            second = int(time.time())
            if second != self._clf_second:
                self._clf_second = second
                self._clf = _clf_time(second)
            values["time"] = self._clf
        wanted = self.headers
        if wanted:
            for name in wanted.values():
                values[name] = "-"
            for header, value in scope["headers"]:
                field = wanted.get(header)
                if field is not None:
                    values[field] = _escape(value)
        return values
