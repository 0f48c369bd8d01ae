"""The access log: one line per answered request, in the format `access_log_format` names.

Built once per server and only when `access_log` is on, so a server without it pays nothing
per request. Only the fields the format uses are computed (the time and the header scans are
the dear ones). A %-style line is handed to logging with its fields as the mapping, so nothing
is formatted when no handler takes INFO on `aioworker.access`.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Final, Protocol

from aioworker._types import HTTPScope
from aioworker.config.accesslog import parse_format

__all__ = ["AccessLog", "Answered"]

logger = logging.getLogger("aioworker.access")

# What a client controls is escaped as nginx escapes it (`"`, `\`, controls, non-ASCII -> \xHH):
# a quote cannot end a field early, a newline cannot start a forged line.
_UNSAFE: Final = re.compile(rb'[\x00-\x1f"\\\x7f-\xff]')
_HEADERS: Final = {"host": b"host", "referer": b"referer", "user_agent": b"user-agent"}
# Month names as the common log format writes them, whatever the process's locale.
_MONTHS: Final = "JanFebMarAprMayJunJulAugSepOctNovDec"


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


def _clf_time() -> str:
    t = time.localtime()
    month = _MONTHS[3 * t.tm_mon - 3 : 3 * t.tm_mon]
    return f"[{t.tm_mday:02d}/{month}/{t.tm_year}:{time.strftime('%H:%M:%S %z', t)}]"


class AccessLog:
    """Formats and logs the line of one answered request."""

    __slots__ = ("fields", "headers", "style", "template")

    def __init__(self, access_log_format: str) -> None:
        self.style, self.template, self.fields = parse_format(access_log_format)
        # The request headers the format uses, as the scope names them -> field.
        self.headers = {_HEADERS[name]: name for name in self.fields & _HEADERS.keys()}

    def log(self, cycle: Answered, elapsed: float) -> None:
        if not logger.isEnabledFor(logging.INFO):
            return
        values = self.values(cycle, elapsed)
        if self.style == "%":
            logger.info(self.template, values)
        else:
            logger.info("%s", self.template.format_map(values))

    def values(self, cycle: Answered, elapsed: float) -> dict[str, str]:
        """The fields this format uses, as strings."""
        scope = cycle.scope
        client = scope["client"]
        raw_path = scope["raw_path"]
        query = scope["query_string"]
        target = _escape(raw_path + b"?" + query if query else raw_path)
        protocol = "HTTP/" + scope["http_version"]
        size = cycle.sent_length
        values = {
            "client": f"{client[0]}:{client[1]}" if client else "-",
            "remote_addr": client[0] if client else "-",
            "method": cycle.method,
            "target": target,
            "path": _escape(raw_path),
            "query": _escape(query),
            "protocol": protocol,
            "request_line": f"{cycle.method} {target} {protocol}",
            "status": str(cycle.status),
            "size": str(size),
            "size_clf": str(size) if size else "-",
            "duration_ms": f"{elapsed * 1000:.1f}",
        }
        if "time" in self.fields:
            values["time"] = _clf_time()
        wanted = self.headers
        if wanted:
            for name in wanted.values():
                values[name] = "-"
            for header, value in scope["headers"]:
                field = wanted.get(header)
                if field is not None:
                    values[field] = _escape(value)
        return values
