"""What an access log line may say: the named formats, the fields of a template, and checking one.

`access_log_format` is a name (`default`, `common`, `combined`) or a template of the fields
below, %-style (`%(status)s`) or {}-style (`{status}`). It is checked when the config is loaded,
so a misspelt field is a config error naming the key, not a worker that fails on its first
request; `aioworker.http.access` fills the fields in.
"""

from __future__ import annotations

import string
from typing import Final

__all__ = ["FIELDS", "FORMATS", "parse_format"]

# Every value is a string (use %(name)s, not %(name)d). Header values and the target are
# escaped as nginx escapes them: `"`, `\`, control and non-ASCII bytes become \xHH, so a line
# cannot be split or forged by what a client sends.
FIELDS: Final[dict[str, str]] = {
    "client": "client address:port as the app sees it (after trusted proxy headers), - if unknown",
    "remote_addr": "client address without the port, - if unknown",
    "method": "request method",
    "target": "request target as received: path and ?query, not decoded",
    "path": "path as received, not decoded",
    "query": "query string without the ?, empty if none",
    "protocol": "HTTP/1.1 or HTTP/1.0",
    "request_line": "method target protocol, as in the request's first line",
    "status": "response status",
    "size": "response body bytes sent (without the head)",
    "size_clf": "the same, - for 0 (common log format)",
    "duration_ms": "milliseconds from the request's turn to the end of its response, e.g. 1.2",
    "time": "[10/Oct/2026:13:55:36 +0000], local time at the end of the response",
    "host": "Host header, - if absent",
    "referer": "Referer header, - if absent",
    "user_agent": "User-Agent header, - if absent",
}

_COMMON: Final = '%(remote_addr)s - - %(time)s "%(request_line)s" %(status)s %(size_clf)s'
FORMATS: Final[dict[str, str]] = {
    "default": (
        '%(client)s - "%(request_line)s" %(status)s %(size)s %(duration_ms)sms "%(user_agent)s"'
    ),
    "common": _COMMON,  # NCSA common log format, as Apache's and nginx's
    "combined": _COMMON + ' "%(referer)s" "%(user_agent)s"',  # nginx's default `combined`
}


# Every field, set to its own name: a template that formats with it formats with real values.
_SAMPLE: Final = {name: name for name in FIELDS}


def parse_format(value: str) -> tuple[str, str, frozenset[str]]:
    """`(style, template, fields used)` for a format name or template; style is "%" or "{".

    Raises ValueError with the problem: an unknown field, a template that does not format.
    """
    named = FORMATS.get(value.lower())
    if named is not None:
        value = named
    if "%(" in value:
        used = _used_percent(value)
        style = "%"
    elif "{" in value:
        used = _used_braces(value)
        style = "{"
    else:
        raise ValueError(
            f"{value!r} is neither {', '.join(FORMATS)} nor a template of %(field)s or {{field}}"
        )
    unknown = sorted(used - FIELDS.keys())
    if unknown:
        raise ValueError(f"unknown field {unknown[0]!r}; fields: {', '.join(FIELDS)}")
    try:
        if style == "%":
            value % _SAMPLE
        else:
            value.format_map(_SAMPLE)
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise ValueError(f"{value!r} does not format: {exc}") from None
    return style, value, frozenset(used)


def _used_percent(template: str) -> set[str]:
    used: set[str] = set()

    class Recorder(dict[str, str]):
        def __missing__(self, key: str) -> str:
            used.add(key)
            return ""

    try:
        template % Recorder()
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{template!r} does not format: {exc}") from None
    return used


def _used_braces(template: str) -> set[str]:
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:
        raise ValueError(f"{template!r} does not format: {exc}") from None
    if any(not name or not name.isidentifier() for name in names):
        raise ValueError(f"{template!r}: every {{}} needs a field name, as in {{status}}")
    return set(names)
