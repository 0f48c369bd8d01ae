"""The ASGI lifespan protocol: startup before the first connection, shutdown after the last."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Literal

from aioworker._types import ASGIApp, Message

__all__ = ["Lifespan", "LifespanError", "LifespanMode"]

logger = logging.getLogger("aioworker.lifespan")

LifespanMode = Literal["auto", "on", "off"]


class LifespanError(RuntimeError):
    """The app reported that startup failed, or raised during it with lifespan "on"."""


class Lifespan:
    """Runs the app's lifespan scope in a task and talks to it through two messages."""

    def __init__(self, app: ASGIApp, mode: LifespanMode = "auto") -> None:
        self.app = app
        self.mode = mode
        # Copied (shallowly) into every request scope's "state" (ASGI lifespan spec 2.3).
        self.state: dict[str, Any] = {}
        self._inbox: asyncio.Queue[Message] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._started: asyncio.Future[str | None] | None = None
        self._stopped: asyncio.Future[str | None] | None = None
        self._supported = mode != "off"
        self._error: BaseException | None = None
        self._received = False  # the app asked for lifespan.startup: it speaks lifespan

    async def startup(self) -> None:
        """Run startup; raise LifespanError if the app reports or raises a failure."""
        if not self._supported:
            return
        loop = asyncio.get_running_loop()
        self._started = loop.create_future()
        self._stopped = loop.create_future()
        self._task = loop.create_task(self._run())
        await self._inbox.put({"type": "lifespan.startup"})
        await asyncio.wait(_either(self._started, self._task), return_when=asyncio.FIRST_COMPLETED)
        if self._started.done():
            failure = self._started.result()
            if failure is not None:
                raise LifespanError(failure or "lifespan startup failed")
            return
        # The app's lifespan task ended before answering startup.
        if self.mode == "on" or (self._error is not None and not self._unsupported_error()):
            message = f"{type(self._error).__name__}: {self._error}" if self._error else ""
            raise LifespanError(f"lifespan startup failed: {message or 'app returned early'}")
        logger.debug("the app does not support the lifespan protocol; continuing without it")
        self._supported = False

    async def shutdown(self) -> None:
        """Run shutdown; a failure is logged, never raised: the server is stopping anyway."""
        if not self._supported or self._task is None or self._stopped is None:
            return
        if self._task.done():
            return
        await self._inbox.put({"type": "lifespan.shutdown"})
        await asyncio.wait(_either(self._stopped, self._task), return_when=asyncio.FIRST_COMPLETED)
        if self._stopped.done() and self._stopped.result() is not None:
            logger.error("lifespan shutdown failed: %s", self._stopped.result())
        elif not self._stopped.done() and self._error is not None:
            logger.error("lifespan shutdown raised %r", self._error)

    def _unsupported_error(self) -> bool:
        # In "auto" mode, an app that raises at once for an unknown scope type is an app
        # without lifespan support, not a failed startup (uvicorn and hypercorn agree).
        # One that raises after taking lifespan.startup from receive() failed its startup.
        return self.mode == "auto" and not self._received

    async def _run(self) -> None:
        scope = {
            "type": "lifespan",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "state": self.state,
        }
        try:
            await self.app(scope, self._receive, self._send)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self._error = exc
            if self._started is not None and self._started.done():
                logger.exception("exception in lifespan")
            elif self.mode == "on" or self._received:
                logger.exception("exception in lifespan startup")
            if not isinstance(exc, Exception):
                raise

    async def _receive(self) -> Message:
        self._received = True
        return await self._inbox.get()

    async def _send(self, message: Message) -> None:
        kind = message["type"]
        started, stopped = self._started, self._stopped
        assert started is not None
        assert stopped is not None
        if kind == "lifespan.startup.complete" and not started.done():
            started.set_result(None)
        elif kind == "lifespan.startup.failed" and not started.done():
            started.set_result(str(message.get("message", "")))
        elif kind == "lifespan.shutdown.complete" and not stopped.done():
            stopped.set_result(None)
        elif kind == "lifespan.shutdown.failed" and not stopped.done():
            stopped.set_result(str(message.get("message", "")) or "shutdown failed")
        else:
            raise RuntimeError(f"unexpected lifespan message {kind!r}")


def _either(first: asyncio.Future[Any], second: asyncio.Future[Any]) -> set[asyncio.Future[Any]]:
    return {first, second}
