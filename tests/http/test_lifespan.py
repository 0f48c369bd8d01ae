"""ASGI lifespan: startup and shutdown, their failure messages, state, and apps without it."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from aioworker.config import HttpSettings
from aioworker.http.lifespan import LifespanError
from tests.helpers.engine import Gate, ServerThread, send_response, shutdown_recorder


class LifespanApp:
    """Records the lifespan messages it gets and answers as told."""

    def __init__(self, startup: str = "complete", shutdown: str = "complete") -> None:
        self.startup = startup
        self.shutdown = shutdown
        self.events: list[str] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            assert scope["asgi"]["version"] == "3.0"
            message = await receive()
            assert message["type"] == "lifespan.startup"
            self.events.append("startup")
            if self.startup == "raise":
                raise RuntimeError("startup exploded")
            if self.startup == "failed":
                await send({"type": "lifespan.startup.failed", "message": "db unreachable"})
                return
            scope["state"]["pool"] = "pool-object"
            scope["state"]["counter"] = 0
            await send({"type": "lifespan.startup.complete"})
            message = await receive()
            assert message["type"] == "lifespan.shutdown"
            self.events.append("shutdown")
            if self.shutdown == "failed":
                await send({"type": "lifespan.shutdown.failed", "message": "flush failed"})
            elif self.shutdown == "raise":
                raise RuntimeError("shutdown exploded")
            else:
                await send({"type": "lifespan.shutdown.complete"})
            return
        self.events.append(f"request {scope['path']}")
        state = scope["state"]
        state["counter"] = state.get("counter", 0) + 1  # must not leak into the next request
        body = f"{state.get('pool')} {state['counter']}".encode()
        await send_response(send, 200, body)


def test_startup_and_shutdown(serve: Any) -> None:
    app = LifespanApp()
    server: ServerThread = serve(app)
    assert app.events == ["startup"]
    assert server.get("/a").body == b"pool-object 1"
    assert server.get("/b").body == b"pool-object 1"  # a fresh copy of the state each time
    server.stop()
    assert app.events == ["startup", "request /a", "request /b", "shutdown"]


def test_startup_failed_message(serve: Any) -> None:
    app = LifespanApp(startup="failed")
    with pytest.raises(LifespanError, match="db unreachable"):
        serve(app)
    assert app.events == ["startup"]


def test_startup_exception_is_a_failure(serve: Any) -> None:
    """An app that raises after receiving lifespan.startup failed, even in "auto"."""
    app = LifespanApp(startup="raise")
    with pytest.raises(LifespanError, match="startup exploded"):
        serve(app)


@pytest.mark.parametrize("how", ["failed", "raise"])
def test_shutdown_failure_is_logged(serve: Any, how: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="aioworker")
    app = LifespanApp(shutdown=how)
    server = serve(app)
    assert server.get().status == 200
    server.stop()  # must not hang or raise
    assert app.events[-1] == "shutdown"
    text = "flush failed" if how == "failed" else "shutdown exploded"
    assert any(
        text in r.getMessage() or (r.exc_info and text in str(r.exc_info[1]))
        for r in caplog.records
    ), caplog.records


async def no_lifespan_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    # Like many small apps and old frameworks: anything but http is an error.
    assert scope["type"] == "http", f"unsupported scope {scope['type']}"
    await send_response(send, 200, b"plain")


def test_app_without_lifespan_still_runs(serve: Any) -> None:
    server = serve(no_lifespan_app, lifespan="auto")
    assert server.get().body == b"plain"


def test_app_returning_at_once_on_lifespan(serve: Any) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            return
        await send_response(send, 200, b"ok")

    server = serve(app)
    assert server.get().body == b"ok"


def test_lifespan_off_never_calls_lifespan(serve: Any) -> None:
    app = LifespanApp()
    server = serve(app, lifespan="off")
    assert server.get().status == 200
    server.stop()
    assert app.events == ["request /"]


def test_lifespan_on_requires_support(serve: Any) -> None:
    with pytest.raises(LifespanError):
        serve(no_lifespan_app, lifespan="on")


def test_shutdown_waits_for_requests_in_progress(serve: Any) -> None:
    gate = Gate()
    order: list[str] = []
    server = serve(shutdown_recorder(order, gate.hold, b"late"))
    with server.connect() as conn:
        conn.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        assert gate.entered.wait(5)
        server.close()
        conn.assert_open(wait=0.1)
        assert order == []
        gate.open()
        assert conn.read_response().body == b"late"
    server.wait_stopped()
    assert order == ["responded", "shutdown"]


def test_hanging_shutdown_is_bounded_by_graceful_timeout(
    serve: Any, caplog: pytest.LogCaptureFixture
) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await receive()
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await Gate().wait()  # never answers shutdown
            return
        await send_response(send, 200, b"ok")

    server = serve(app, HttpSettings(graceful_timeout=0.3))
    with caplog.at_level(logging.ERROR, logger="aioworker.server"):
        server.stop(timeout=5.0)
    assert "lifespan shutdown did not finish within 0.3s" in caplog.text
