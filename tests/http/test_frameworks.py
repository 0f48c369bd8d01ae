"""Six frameworks' apps answer the same under aioworker as under uvicorn.

Each framework's copy of the comparison app (tests/apps/frameworks) runs under both servers,
as real processes on kernel-chosen ports; every probe goes to both, and the answers must be
equal: status, body and every header but the two that name the moment and the server
(`date`, `server`). The one difference kept on purpose is undone by `chosen_framing`, which
first checks that our side of it is right; docs/http.md ("Compared with uvicorn") explains it.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.helpers.burst import unchunk
from tests.helpers.master import MasterProcess, make_dir, spawn, spawn_python

FRAMEWORKS = ("starlette", "fastapi", "quart", "litestar", "falcon", "django")

# Headers that differ between any two servers, or between two runs of the same one.
IGNORED = {"date", "server"}


@dataclass(frozen=True)
class Probe:
    name: str
    raw: bytes  # one whole HTTP/1.1 request, sent on its own connection


def _request(method: str, target: str, *headers: str, body: bytes = b"") -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "host: probe", "connection: close", *headers]
    if body:
        lines.append(f"content-length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


PROBES = (
    Probe("hello", _request("GET", "/hello")),
    Probe("head", _request("HEAD", "/hello")),
    Probe("echo", _request("POST", "/echo", body=b"x" * 70_000)),
    Probe(
        "echo-chunked",
        b"POST /echo HTTP/1.1\r\nhost: probe\r\nconnection: close\r\n"
        b"transfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
    ),
    Probe("json", _request("GET", "/json")),
    Probe("stream", _request("GET", "/stream")),
    Probe("query", _request("GET", "/query?q=a%20b&q2=%C3%A9")),
    Probe("header", _request("GET", "/header", "x-probe: probe value")),
    Probe("created", _request("GET", "/created")),
    Probe("raise", _request("GET", "/raise")),
    Probe("missing", _request("GET", "/nowhere")),
    Probe("http10", b"GET /hello HTTP/1.0\r\nhost: probe\r\n\r\n"),
)


@dataclass(frozen=True)
class Answer:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


def exchange(port: int, raw: bytes) -> Answer:
    """Send `raw`, read until the server closes; the answer with chunked bodies decoded."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(raw)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = tuple(
        sorted(
            (name.strip().lower(), value.strip())
            for name, _, value in (line.partition(":") for line in lines)
            if name.strip().lower() not in IGNORED
        )
    )
    if ("transfer-encoding", "chunked") in headers:
        body = unchunk(body)
    return Answer(int(status_line.split()[1]), headers, body)


def chosen_framing(ours: Answer, theirs: Answer) -> Answer:
    """`theirs` as we frame it: a body the app sends in one message gets `content-length`.

    uvicorn chunks such a body whenever the app gave no length (Django does not), even to an
    HTTP/1.0 client, which cannot read chunked framing. aioworker knows the whole body when the
    app's only `http.response.body` message arrives, so it sends the length instead.
    """
    chunked = ("transfer-encoding", "chunked")
    if chunked not in theirs.headers or chunked in ours.headers:
        return theirs
    assert dict(ours.headers)["content-length"] == str(len(ours.body))
    headers = [h for h in theirs.headers if h != chunked]
    headers.append(("content-length", str(len(theirs.body))))
    return Answer(theirs.status, tuple(sorted(headers)), theirs.body)


def serving(process: MasterProcess, pattern: str) -> int:
    return int(process.wait_for(pattern).group(1))


@pytest.fixture(scope="module", params=FRAMEWORKS)
def servers(request: pytest.FixtureRequest) -> Iterator[tuple[str, int, int]]:
    """(framework, aioworker port, uvicorn port), both serving that framework's app."""
    framework: str = request.param
    app = f"tests.apps.frameworks.{framework}_app:app"
    ours = spawn(["serve", app, "--listen", "http://127.0.0.1:0"], make_dir())
    theirs = spawn_python(["-m", "uvicorn", app, "--port", "0"], make_dir())
    try:
        our_port = serving(ours, r"listening group=\w+ url=http://127\.0\.0\.1:(\d+)")
        ours.wait_started()
        their_port = serving(theirs, r"Uvicorn running on http://127\.0\.0\.1:(\d+)")
        yield framework, our_port, their_port
    finally:
        ours.stop()
        theirs.stop()


@pytest.mark.parametrize("probe", PROBES, ids=[p.name for p in PROBES])
def test_same_answer_as_uvicorn(servers: tuple[str, int, int], probe: Probe) -> None:
    _, our_port, their_port = servers
    ours, theirs = exchange(our_port, probe.raw), exchange(their_port, probe.raw)
    assert ours == chosen_framing(ours, theirs)
