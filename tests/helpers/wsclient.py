"""A raw WebSocket client over a RawConn: the handshake and single frames, built byte by byte.

The `websockets` client is the real client of most tests; this one sends what no well-behaved
client would (bad UTF-8, unmasked or oversized frames, no pong) and reads frames as they are.
"""

from __future__ import annotations

import base64
import os
import struct

from tests.helpers.client import NoResponse, RawConn, Response

TEXT, BINARY, CONT, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA
KEY = base64.b64encode(b"0123456789abcdef").decode()


def handshake_request(
    path: str = "/echo", headers: dict[str, str] | None = None, *, version: str = "13"
) -> bytes:
    fields = {
        "Host": "test",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": KEY,
        "Sec-WebSocket-Version": version,
    }
    fields.update(headers or {})
    lines = "".join(f"{k}: {v}\r\n" for k, v in fields.items() if v)
    return f"GET {path} HTTP/1.1\r\n{lines}\r\n".encode("latin-1")


def open_ws(conn: RawConn, path: str = "/echo", headers: dict[str, str] | None = None) -> Response:
    """Send a handshake and read the answer; assert it is a 101."""
    conn.send(handshake_request(path, headers))
    response = conn.read_response()
    assert response.status == 101, response
    return response


def frame(
    opcode: int, payload: bytes = b"", *, fin: bool = True, mask: bool = True, rsv: int = 0
) -> bytes:
    """One client frame (masked unless told otherwise, RFC 6455 section 5.2)."""
    first = (0x80 if fin else 0) | rsv | opcode
    size = len(payload)
    bit = 0x80 if mask else 0
    if size < 126:
        head = bytes([first, bit | size])
    elif size < 1 << 16:
        head = bytes([first, bit | 126]) + struct.pack("!H", size)
    else:
        head = bytes([first, bit | 127]) + struct.pack("!Q", size)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def close_frame(code: int, reason: str = "") -> bytes:
    return frame(CLOSE, struct.pack("!H", code) + reason.encode())


def read_frame(conn: RawConn, timeout: float = 5.0) -> tuple[bool, int, bytes]:
    """The next server frame: (fin, opcode, payload). Raise NoResponse if none arrives."""
    import time

    deadline = time.monotonic() + timeout

    def need(n: int) -> None:
        while len(conn.buf) < n:
            if not conn._fill(deadline, "a frame"):
                raise NoResponse(f"closed before a whole frame: {bytes(conn.buf)!r}")

    need(2)
    first, second = conn.buf[0], conn.buf[1]
    size = second & 0x7F
    pos = 2
    if size == 126:
        need(4)
        size = struct.unpack("!H", conn.buf[2:4])[0]
        pos = 4
    elif size == 127:
        need(10)
        size = struct.unpack("!Q", conn.buf[2:10])[0]
        pos = 10
    need(pos + size)
    payload = bytes(conn.buf[pos : pos + size])
    del conn.buf[: pos + size]
    return bool(first & 0x80), first & 0x0F, payload


def close_code(payload: bytes) -> int:
    return int(struct.unpack("!H", payload[:2])[0]) if len(payload) >= 2 else 1005
