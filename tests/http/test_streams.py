"""Long responses: request_timeout bounds the time to the head only; a started response is
bounded by write progress (send_timeout) and by the app's silence (stream_idle_timeout)."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from typing import Any

import pytest

from tests.helpers.client import IncompleteResponse, get
from tests.helpers.engine import FAST, Serve, send_response
from tests.helpers.wait import wait_until

SHORT = 0.5  # seconds: the bound under test
SLACK = 2.0  # seconds: how late the server may act on a loaded 2-core machine
EVENTS = 11  # one every 0.2 s: the stream lasts over 2 s, four times request_timeout


async def _event_stream(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Server-sent events, one every 0.2 s, then the end of the stream."""
    if scope["type"] != "http":
        return
    if scope["path"] != "/events":
        await send_response(send, 200, b"ok")
        return
    headers = [(b"content-type", b"text/event-stream")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    for i in range(EVENTS):
        await send({"type": "http.response.body", "body": b"data: %d\n\n" % i, "more_body": True})
        await asyncio.sleep(0.2)  # the app's pace, not a wait for the test
    await send({"type": "http.response.body", "body": b"data: end\n\n"})


def test_event_stream_outlives_request_timeout(serve: Serve) -> None:
    settings = dataclasses.replace(FAST, request_timeout=SHORT, stream_idle_timeout=SHORT)
    server = serve(_event_stream, settings)
    with server.connect() as conn:
        start = time.monotonic()
        conn.send(get("/events"))
        response = conn.read_response(timeout=EVENTS * 0.2 + SLACK)
        lasted = time.monotonic() - start
        assert response.status == 200
        assert response.chunked  # ended by its closing chunk, not cut
        expected = b"".join(b"data: %d\n\n" % i for i in range(EVENTS)) + b"data: end\n\n"
        assert response.body == expected
        assert lasted > 4 * SHORT
        # The connection is still good for the next request.
        conn.send(get("/"))
        assert conn.read_response().body == b"ok"


def test_late_head_is_504_and_a_started_response_is_not(serve: Serve) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/late":
            await asyncio.sleep(4 * SHORT)  # the app's own slowness
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await asyncio.sleep(4 * SHORT)
        await send({"type": "http.response.body", "body": b"slow body"})

    settings = dataclasses.replace(FAST, request_timeout=SHORT, stream_idle_timeout=0)
    server = serve(app, settings)
    with server.connect() as conn:
        conn.send(get("/late"))
        assert conn.read_response(timeout=SHORT + SLACK).status == 504
    with server.connect() as conn:
        conn.send(get("/early"))
        response = conn.read_response(timeout=8 * SHORT + SLACK)
        assert (response.status, response.body) == (200, b"slow body")


@pytest.mark.parametrize("request_timeout", [0.0, 60.0])
def test_silent_stream_is_cut_after_stream_idle_timeout(
    serve: Serve, request_timeout: float
) -> None:
    cancelled = threading.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    settings = dataclasses.replace(FAST, request_timeout=request_timeout, stream_idle_timeout=SHORT)
    server = serve(app, settings)
    with server.connect() as conn:
        start = time.monotonic()
        conn.send(get("/"))
        with pytest.raises(IncompleteResponse) as info:
            conn.read_response(timeout=SHORT + SLACK)
        cut = time.monotonic() - start
    assert b"partial" in info.value.partial
    assert b" 504 " not in info.value.partial
    assert cut >= SHORT * 0.9
    assert cancelled.wait(SLACK), "the app task was not cancelled"


def test_client_that_never_reads_is_cut_after_send_timeout(serve: Serve) -> None:
    """Writing stays paused: the connection is closed and the app's send() fails. Not the idle
    bound (shorter here): an app waiting for the client to read is not silent."""
    ended: list[BaseException] = []
    done = threading.Event()
    sent = [0]

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        chunk = b"x" * 65536
        try:
            while True:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                sent[0] += len(chunk)
        except BaseException as exc:
            ended.append(exc)
            done.set()
            raise

    settings = dataclasses.replace(
        FAST, request_timeout=SHORT, stream_idle_timeout=SHORT / 2, send_timeout=SHORT
    )
    server = serve(app, settings)
    with server.connect() as conn:
        start = time.monotonic()
        conn.send(get("/"))
        assert done.wait(SHORT + SLACK), "a client that never reads held its response"
        took = time.monotonic() - start
        conn.read_until_closed(timeout=SLACK)  # closed: its unread bytes, then the end
    assert took >= SHORT * 0.9
    assert [type(e).__name__ for e in ended] == ["ClientDisconnected"]
    assert sent[0] < 512 * 2**20  # stopped once the buffers were full, not streaming on
    state = server.server.state
    wait_until(lambda: server.call(lambda: state.connections) == 0, SLACK, "closed")
