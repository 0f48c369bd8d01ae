"""The WebSocket handshake decision (http/handshake.py): a request head in, accept/refuse out."""

from __future__ import annotations

import base64

import pytest

from aioworker.http.handshake import Handshake, Refusal, accept_key, check_handshake
from aioworker.http.parser import RequestHead, RequestParser

KEY = base64.b64encode(b"0123456789abcdef")
GOOD = {
    b"host": b"test",
    b"upgrade": b"websocket",
    b"connection": b"keep-alive, Upgrade",
    b"sec-websocket-key": KEY,
    b"sec-websocket-version": b"13",
}


def head(
    changes: dict[bytes, bytes | None] | None = None,
    *,
    method: str = "GET",
    version: str = "1.1",
    extra: list[tuple[bytes, bytes]] | None = None,
    content_length: int | None = 0,
) -> RequestHead:
    fields: dict[bytes, bytes | None] = {**GOOD, **(changes or {})}
    headers = [(k, v) for k, v in fields.items() if v is not None] + (extra or [])
    h = RequestHead(method, b"/ws", b"", version, headers, True, content_length, False)
    h.upgrade = True
    return h


def test_rfc_6455_sample_key() -> None:
    # RFC 6455 section 1.3's worked example.
    assert accept_key(b"dGhlIHNhbXBsZSBub25jZQ==") == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_a_valid_handshake_is_accepted_with_offers() -> None:
    decision = check_handshake(
        head(
            extra=[
                (b"sec-websocket-protocol", b"chat, superchat"),
                (b"sec-websocket-protocol", b"v2"),
                (b"sec-websocket-extensions", b"permessage-deflate"),
            ]
        )
    )
    assert isinstance(decision, Handshake)
    assert decision.accept == accept_key(KEY)
    assert decision.subprotocols == ["chat", "superchat", "v2"]
    assert decision.extensions == "permessage-deflate"


def test_other_upgrades_are_plain_http() -> None:
    assert check_handshake(head({b"upgrade": b"h2c"})) is None
    plain = head()
    plain.upgrade = False  # llhttp saw no upgrade (no Connection: upgrade)
    assert check_handshake(plain) is None


@pytest.mark.parametrize(
    ("changes", "kwargs", "status"),
    [
        pytest.param({b"sec-websocket-version": b"8"}, {}, 426, id="old-version"),
        pytest.param({b"sec-websocket-version": None}, {}, 400, id="no-version"),
        pytest.param({b"sec-websocket-key": None}, {}, 400, id="no-key"),
        pytest.param({b"sec-websocket-key": b"short"}, {}, 400, id="key-not-base64-16"),
        pytest.param({b"sec-websocket-key": base64.b64encode(b"x" * 15)}, {}, 400, id="key-15"),
        pytest.param({b"connection": b"keep-alive"}, {}, 400, id="no-connection-upgrade"),
        pytest.param({}, {"method": "POST"}, 400, id="post"),
        pytest.param({}, {"version": "1.0"}, 400, id="http-1.0"),
        pytest.param({}, {"content_length": 5}, 400, id="with-body"),
        pytest.param({}, {"content_length": None}, 400, id="chunked-body"),
        pytest.param({}, {"extra": [(b"sec-websocket-key", KEY)]}, 400, id="two-keys"),
    ],
)
def test_bad_handshakes_are_refused(
    changes: dict[bytes, bytes | None], kwargs: dict[str, object], status: int
) -> None:
    decision = check_handshake(head(changes, **kwargs))  # type: ignore[arg-type]
    assert isinstance(decision, Refusal)
    assert decision.status == status
    if status == 426:  # RFC 6455 section 4.4: say which version is spoken
        assert decision.headers == ((b"sec-websocket-version", b"13"),)


def test_the_parser_marks_a_websocket_handshake_as_upgrade() -> None:
    raw = b"GET /ws HTTP/1.1\r\n" + b"".join(k + b": " + v + b"\r\n" for k, v in GOOD.items())
    events = RequestParser().feed(raw + b"\r\n")
    parsed = events[0]
    assert isinstance(parsed, RequestHead)
    assert parsed.upgrade
    assert isinstance(check_handshake(parsed), Handshake)
