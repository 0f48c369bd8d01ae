"""The access log line: named formats, templates, fields, escaping, and no cost when off."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import logging
import re
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from aioworker import logs
from aioworker._types import HTTPScope
from aioworker.config.accesslog import FIELDS, FORMATS, parse_format
from aioworker.http.access import AccessLog
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
        "%(status)s 100%% %(status)s %%(method)s",
        "200 100% 200 %\\(method\\)s",
        id="percent-literal",
    ),
    pytest.param("[%(status)5s] %(method)-4s|", r"\[  200\] GET \|", id="percent-widths"),
    pytest.param(
        "|".join(f"%({name})s" for name in FIELDS),
        r"\|".join(
            (
                rf"127\.0\.0\.1:{PORT}",
                r"127\.0\.0\.1",
                "GET",
                r"/items/%41\?page=2&q=a\+b",
                "/items/%41",
                r"page=2&q=a\+b",
                r"HTTP/1\.1",
                LINE,
                "200",
                "5",
                "5",
                r"\d+\.\d",
                CLF_TIME,
                r"shop\.test",
                r"http://from\.test/",
                r"agent/1\.0 \(x\)",
            )
        ),
        id="every-field",
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


# -- aioworker's own logging setup: lines laid out here and written once per loop turn -----


class _Writes(io.StringIO):
    """A stream that keeps each write apart, to see how a batch was cut."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)


@contextlib.contextmanager
def _own_logging() -> Iterator[logging.StreamHandler[Any]]:
    """aioworker's logging setup alone, writing to a stream that keeps each write apart.

    Entered inside the test: pytest adds its capture handlers to the root logger at the start
    of each phase, and they are taken off here until the test is done."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, logging.getLogger("aioworker").level, sys.stderr)
    root.handlers = []
    sys.stderr = _Writes()
    try:
        logs.setup("info")
        (handler,) = root.handlers
        yield handler  # type: ignore[misc]
    finally:
        root.handlers, level, own, sys.stderr = saved
        root.setLevel(level)
        logging.getLogger("aioworker").setLevel(own)


@dataclasses.dataclass
class _Cycle:
    scope: HTTPScope
    method: str = "GET"
    status: int = 200
    sent_length: int = 5


def _cycle(path: bytes = b"/items") -> _Cycle:
    scope: Any = {
        "client": ("127.0.0.1", 4321),
        "raw_path": path,
        "query_string": b"",
        "http_version": "1.1",
        "headers": [(b"user-agent", b"agent/1.0")],
    }
    return _Cycle(scope)


Change = Callable[[logging.Logger, logging.StreamHandler[Any], pytest.MonkeyPatch], None]
CHANGES = [
    pytest.param(lambda a, h, mp: a.addHandler(logging.NullHandler()), id="another-handler"),
    pytest.param(lambda a, h, mp: a.addFilter(lambda record: True), id="a-filter"),
    pytest.param(lambda a, h, mp: mp.setattr(a, "propagate", False), id="not-propagating"),
    pytest.param(
        lambda a, h, mp: mp.setattr(h, "formatter", logging.Formatter("%(message)s")),
        id="another-format",
    ),
    pytest.param(lambda a, h, mp: mp.setattr(h, "level", logging.WARNING), id="a-higher-level"),
    pytest.param(lambda a, h, mp: mp.setattr(h, "terminator", "\r\n"), id="another-terminator"),
    pytest.param(
        lambda a, h, mp: mp.setattr(logging.Formatter, "default_msec_format", "%s.%03d"),
        id="every-formatters-milliseconds",
    ),
    pytest.param(
        lambda a, h, mp: mp.setattr(logging.Formatter, "default_time_format", "%H:%M:%S"),
        id="every-formatters-time",
    ),
    pytest.param(lambda a, h, mp: mp.setattr(logging, "logProcesses", False), id="no-pids"),
    pytest.param(
        lambda a, h, mp: logging.setLogRecordFactory(type("R", (logging.LogRecord,), {})),
        id="a-record-factory",
    ),
]


@pytest.mark.parametrize("change", CHANGES)
def test_own_handler_is_found_only_when_it_alone_writes(
    change: Change, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Anything that would make logging write the line otherwise sends it through logging."""
    access = logging.getLogger("aioworker.access")
    with _own_logging() as handler:
        assert logs.own_handler(access) is handler
        saved = (access.handlers[:], access.filters[:])
        try:
            change(access, handler, monkeypatch)
            assert logs.own_handler(access) is None
        finally:
            access.handlers, access.filters = saved
            logging.setLogRecordFactory(logging.LogRecord)
            monkeypatch.undo()
        assert logs.own_handler(access) is handler


def test_lines_held_back_are_written_before_an_exit() -> None:
    """A fast stop (SIGQUIT) or a crash ends the worker through logs.flush_std() without another
    loop turn: the batch is written there."""
    with _own_logging() as handler:
        stream = handler.stream
        loop = asyncio.new_event_loop()
        try:
            access_log = AccessLog("%(path)s", loop)  # a loop that never turns again
            access_log.log(_cycle(b"/last"), 0.001)
            assert stream.getvalue() == ""
            logs.flush_std()
            assert stream.getvalue().endswith(" INFO aioworker.access: /last\n")
        finally:
            loop.close()


def test_batched_lines_are_laid_out_as_logging_lays_them_out() -> None:
    with _own_logging() as handler:
        _laid_out(handler.stream)


def _laid_out(stream: _Writes) -> None:

    async def main() -> None:
        access_log = AccessLog("default", asyncio.get_running_loop())
        for path in (b"/a", b"/b"):
            access_log.log(_cycle(path), 0.0012)
        assert not stream.writes  # not before the end of this loop turn
        await asyncio.sleep(0)  # the turn ends: the batch is written, in one write
        assert len(stream.writes) == 1
        access_log.log(_cycle(b"/c"), 0.0012)
        access_log.flush()  # as the server does once its connections are done

    asyncio.run(main())
    first, *_ = stream.getvalue().splitlines()
    logging.getLogger("aioworker.access").info("%s", first.split(": ", 1)[1])
    *batched, through_logging = stream.getvalue().splitlines()
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} "
    assert re.match(stamp, through_logging)
    assert [re.sub(stamp, "", line) for line in batched] == [
        re.sub(stamp, "", through_logging).replace("/a", path) for path in ("/a", "/b", "/c")
    ]
    assert len(stream.writes) == 3


def test_a_batch_is_written_in_whole_lines_of_at_most_pipe_buf_bytes() -> None:
    """In daemon mode the workers share the master's relay pipe: a write up to PIPE_BUF (4096
    bytes) is never interleaved with another worker's."""
    with _own_logging() as handler:
        _cut(handler.stream)


def _cut(stream: _Writes) -> None:

    async def main() -> None:
        access_log = AccessLog("%(path)s", asyncio.get_running_loop())
        for n in range(300):
            access_log.log(_cycle(f"/{n:03d}/".encode() + b"x" * 100), 0.001)
        await asyncio.sleep(0)

    asyncio.run(main())
    assert len(stream.writes) > 1
    assert all(len(text.encode()) <= 4096 and text.endswith("\n") for text in stream.writes)
    paths = [line.rsplit(": ", 1)[1] for line in stream.getvalue().splitlines()]
    assert paths == [f"/{n:03d}/" + "x" * 100 for n in range(300)]
