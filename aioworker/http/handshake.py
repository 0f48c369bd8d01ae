"""The WebSocket opening handshake (RFC 6455 section 4.2): a request head in, a decision out.

No I/O and no WebSocket library: `check_handshake` reads a parsed request head and says
whether it asks for a WebSocket at all (None: serve it as plain HTTP, as any other Upgrade),
whether it is a valid one (`Handshake`, with the accept key and what the client offers), or
how to refuse it (`Refusal`: 400 for a malformed request, 426 for an unknown version).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from typing import Final

from aioworker.http.parser import RequestHead

__all__ = ["Handshake", "Refusal", "accept_key", "check_handshake", "wants_websocket"]

# RFC 6455 section 1.3: the GUID appended to the client's key before hashing.
_GUID: Final = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
# Section 4.4: the one version this server speaks, said back when a client asks for another.
VERSION_HEADER: Final = (b"sec-websocket-version", b"13")


class Handshake:
    """A valid WebSocket handshake: what the 101 needs and what the app is offered."""

    __slots__ = ("accept", "extensions", "subprotocols")

    def __init__(self, accept: bytes, subprotocols: list[str], extensions: str) -> None:
        self.accept = accept  # the Sec-WebSocket-Accept value
        self.subprotocols = subprotocols  # in the client's order of preference
        self.extensions = extensions  # the Sec-WebSocket-Extensions offer ('' if none)


class Refusal:
    """An invalid handshake: answer `status` (with `headers`) and close."""

    __slots__ = ("headers", "reason", "status")

    def __init__(
        self, status: int, reason: str, headers: tuple[tuple[bytes, bytes], ...] = ()
    ) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers


def _tokens(value: bytes) -> list[bytes]:
    return [t.strip().lower() for t in value.split(b",")]


def wants_websocket(head: RequestHead) -> bool:
    """The request asks to upgrade to websocket (its other checks come in check_handshake)."""
    if not head.upgrade:
        return False
    for name, value in head.headers:
        if name == b"upgrade" and b"websocket" in _tokens(value):
            return True
    return False


def accept_key(key: bytes) -> bytes:
    """Sec-WebSocket-Accept for a Sec-WebSocket-Key (RFC 6455 section 4.2.2 item 5.4)."""
    return base64.b64encode(hashlib.sha1(key + _GUID).digest())


def check_handshake(head: RequestHead) -> Handshake | Refusal | None:
    """Decide on a request head: None if it is no WebSocket upgrade, else accept or refuse."""
    if not wants_websocket(head):
        return None
    # Section 4.2.1: a GET, HTTP/1.1 or later, with Connection naming upgrade.
    if head.method != "GET":
        return Refusal(400, f"WebSocket handshake with method {head.method}")
    if head.http_version != "1.1":
        return Refusal(400, f"WebSocket handshake over HTTP/{head.http_version}")
    if head.content_length != 0:
        return Refusal(400, "WebSocket handshake with a body")
    keys: list[bytes] = []
    versions: list[bytes] = []
    protocols: list[str] = []
    extensions: list[str] = []
    connection_upgrade = False
    for name, value in head.headers:
        if name == b"connection":
            connection_upgrade = connection_upgrade or b"upgrade" in _tokens(value)
        elif name == b"sec-websocket-key":
            keys.append(value.strip())
        elif name == b"sec-websocket-version":
            versions.append(value.strip())
        elif name == b"sec-websocket-protocol":
            protocols.extend(p for p in value.decode("latin-1").replace(" ", "").split(",") if p)
        elif name == b"sec-websocket-extensions":
            extensions.append(value.decode("latin-1"))
    if not connection_upgrade:
        return Refusal(400, "WebSocket handshake without Connection: upgrade")
    if len(versions) != 1:
        return Refusal(400, "WebSocket handshake without exactly one Sec-WebSocket-Version")
    if versions[0] != b"13":
        # Section 4.4: a version the server does not speak is answered with the ones it does.
        return Refusal(426, "unsupported WebSocket version", (VERSION_HEADER,))
    if len(keys) != 1:
        return Refusal(400, "WebSocket handshake without exactly one Sec-WebSocket-Key")
    try:
        nonce = base64.b64decode(keys[0], validate=True)
    except binascii.Error:
        nonce = b""
    if len(nonce) != 16:  # section 4.2.1 item 5: a base64-encoded 16-byte value
        return Refusal(400, "invalid Sec-WebSocket-Key")
    return Handshake(accept_key(keys[0]), protocols, ", ".join(extensions))
