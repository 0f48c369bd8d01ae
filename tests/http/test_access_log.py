"""The access log line: named formats, templates, fields, escaping, and no cost when off."""

from __future__ import annotations

import dataclasses
import logging
import re
from typing import Any

import pytest

from aioworker.config.accesslog import FIELDS, FORMATS, parse_format
from tests.helpers.engine import FAST, Serve, ServerThread, send_response
from tests.helpers.wait import wait_until

REQUEST = (
    b"GET /items/%41?page=2&q=a+b HTTP/1.1\r\nHost: shop.test\r\n"
    b"User-Agent: agent/1.0 (x)\r\nReferer: http://from.test/\r\n\r\n"
)
CLF_TIME = r"\[\d\d/[A-Z][a-z][a-z]/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\]"
PORT = r"\d+"
LINE = r"GET /items/%41\?page=2&q=a\+b HTTP/1\.1"

FORMATTED = [
    pytest.param(
        "default",
        rf'127\.0\.0\.1:{PORT} - "{LINE}" 200 5 \d+\.\dms "agent/1\.0 \(x\)"',
        id="default",
    ),
    pytest.param("common", rf'127\.0\.0\.1 - - {CLF_TIME} "{LINE}" 200 5', id="common"),
    pytest.param(
        "combined",
        rf'127\.0\.0\.1 - - {CLF_TIME} "{LINE}" 200 5 "http://from\.test/" "agent/1\.0 \(x\)"',
        id="combined",
    ),
    pytest.param(
        "%(method)s %(path)s q=%(query)s %(status)s %(host)s %(protocol)s",
        r"GET /items/%41 q=page=2&q=a\+b 200 shop\.test HTTP/1\.1",
        id="percent-template",
    ),
    pytest.param(
        "{remote_addr} {target} size={size} {user_agent!r:>30}",
        r"127\.0\.0\.1 /items/%41\?page=2&q=a\+b size=5 +'agent/1\.0 \(x\)'",
        id="brace-template",
    ),
]


async def _shop(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    if scope["path"] == "/boom":
        raise RuntimeError("a bug")
    await send_response(send, 200, b"hello")


def _lines(caplog: pytest.LogCaptureFixture, count: int = 1) -> list[str]:
    wait_until(
        lambda: len([r for r in caplog.records if r.name == "aioworker.access"]) >= count,
        5.0,
        "the access log line",
    )
    return [r.getMessage() for r in caplog.records if r.name == "aioworker.access"]


def _logging(serve: Serve, access_log_format: str) -> ServerThread:
    settings = dataclasses.replace(FAST, access_log=True, access_log_format=access_log_format)
    return serve(_shop, settings)


@pytest.mark.parametrize(("access_log_format", "pattern"), FORMATTED)
def test_formats(
    serve: Serve, caplog: pytest.LogCaptureFixture, access_log_format: str, pattern: str
) -> None:
    caplog.set_level(logging.INFO, logger="aioworker.access")
    server = _logging(serve, access_log_format)
    assert server.request(REQUEST).status == 200
    (line,) = _lines(caplog)
    assert re.fullmatch(pattern, line), line


def test_what_the_client_sends_is_escaped(serve: Serve, caplog: pytest.LogCaptureFixture) -> None:
    """A quote cannot end the field early, a byte outside ASCII is shown, not decoded."""
    caplog.set_level(logging.INFO, logger="aioworker.access")
    server = _logging(serve, "combined")
    raw = b'GET /caf%C3%A9 HTTP/1.1\r\nHost: a\r\nUser-Agent: evil" 200 9 "x\\\xff\r\n\r\n'
    assert server.request(raw).status == 200
    (line,) = _lines(caplog)
    assert line.endswith(r'"GET /caf%C3%A9 HTTP/1.1" 200 5 "-" "evil\x22 200 9 \x22x\x5C\xFF"')


def test_server_answers_and_head_requests_have_their_size(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aioworker.access")
    server = _logging(serve, "%(method)s %(status)s %(size)s %(size_clf)s")
    assert server.get("/boom").status == 500
    assert server.request(b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n", method="HEAD").status == 200
    lines = _lines(caplog, 2)
    # "Internal Server Error\n" is the server's own body.
    assert lines == ["GET 500 22 22", "HEAD 200 0 -"]


def test_chunked_response_size(serve: Serve, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="aioworker.access")

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for part in (b"abc", b"", b"defg"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b"h"})

    settings = dataclasses.replace(FAST, access_log=True, access_log_format="{size}")
    server = serve(app, settings)
    response = server.get("/")
    assert (response.chunked, response.body) == (True, b"abcdefgh")
    assert _lines(caplog) == ["8"]


def test_off_builds_nothing(serve: Serve) -> None:
    """access_log = false: no formatter exists, so a request costs one `is None` for it."""
    server = serve(_shop, dataclasses.replace(FAST, access_log_format="combined"))
    assert server.server._ctx.access is None


def test_every_named_format_and_field_is_documented() -> None:
    from pathlib import Path

    docs = (Path(__file__).parents[2] / "docs" / "observability.md").read_text()
    for name in (*FORMATS, *FIELDS):
        assert f"`{name}`" in docs, name
    for name in FORMATS:
        assert parse_format(name)[0] == "%"
