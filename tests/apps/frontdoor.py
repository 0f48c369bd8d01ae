"""The example app, with the group, pid and client address in every response's headers.

Used by test_frontdoor.py: the example app tells its group and client only on /info, and the front
door test needs to know which group answered any path (/task/sleep, /taskforce, a 404).
"""

from __future__ import annotations

import os
from typing import Any

from examples.app import app as example


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        await example(scope, receive, send)
        return
    client = scope.get("client")
    tags = [
        (b"x-aioworker-group", os.environ.get("AIOWORKER_GROUP", "").encode()),
        (b"x-aioworker-pid", str(os.getpid()).encode()),
        (b"x-aioworker-client", f"{client[0]} {client[1]}".encode() if client else b"-"),
    ]

    async def tagged(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), *tags]}
        await send(message)

    await example(scope, receive, tagged)
