"""Many concurrent HTTP/1.1 requests from one asyncio loop, each on its own connection.

For bursts larger than a thread per request allows: `burst(address, paths)` opens every
connection at once, sends `GET path` with Connection: close, and returns each request's status,
headers, body and latency (errors as status 0 with the exception's text as the body).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

__all__ = ["Answer", "burst", "fetch", "unchunk"]


@dataclass
class Answer:
    status: int
    body: bytes
    seconds: float
    headers: dict[str, str] = field(default_factory=dict)


async def fetch(
    address: tuple[str, int],
    path: str,
    headers: Mapping[str, str] | None = None,
    timeout: float = 60.0,
) -> Answer:
    """One GET on a new connection, read to EOF."""
    began = time.monotonic()
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(*address), timeout)
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n{extra}\r\n".encode()
        )
        raw = await asyncio.wait_for(reader.read(-1), timeout)
        writer.close()
    except (OSError, asyncio.TimeoutError) as exc:
        return Answer(0, repr(exc).encode(), time.monotonic() - began)
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    try:
        status = int(lines[0].split()[1])
    except (IndexError, ValueError):
        return Answer(0, raw, time.monotonic() - began)
    found = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        found[name.strip().lower()] = value.strip()
    if found.get("transfer-encoding") == "chunked":
        body = unchunk(body)
    return Answer(status, body, time.monotonic() - began, found)


def unchunk(data: bytes) -> bytes:
    """A chunked body's data (RFC 9112 section 7.1), up to the last chunk or the end."""
    out = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += data[:size]
        data = data[size + 2 :]
    return out


async def burst(
    address: tuple[str, int], paths: Sequence[str], timeout: float = 60.0
) -> list[Answer]:
    """Every path requested at once; answers in the order of `paths`."""
    return list(await asyncio.gather(*(fetch(address, p, timeout=timeout) for p in paths)))
