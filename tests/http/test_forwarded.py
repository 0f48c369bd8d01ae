"""Trusted proxy headers: which peers are trusted and what their headers resolve to."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from aioworker._types import Receive, Scope, Send
from aioworker.config import HttpSettings
from aioworker.http.forwarded import ProxyHeaders, parse_node

PEER = ("127.0.0.1", 50000)
Headers = list[tuple[bytes, bytes]]


def h(*pairs: tuple[str, str]) -> Headers:
    return [(name.encode(), value.encode()) for name, value in pairs]


@pytest.mark.parametrize(
    ("headers", "client", "scheme"),
    [
        pytest.param(h(), PEER, "http", id="no-proxy-headers"),
        pytest.param(h(("host", "x"), ("accept", "*/*")), PEER, "http", id="unrelated-headers"),
        pytest.param(h(("x-forwarded-for", "203.0.113.7")), ("203.0.113.7", 0), "http", id="xff"),
        pytest.param(
            h(("x-forwarded-for", "198.51.100.1, 203.0.113.7")),
            ("203.0.113.7", 0),
            "http",
            id="xff-forged-left-entry-ignored",
        ),
        pytest.param(
            h(("x-forwarded-for", "203.0.113.7, 10.0.0.2, 127.0.0.1")),
            ("10.0.0.2", 0),
            "http",
            id="xff-rightmost-untrusted",
        ),
        pytest.param(
            h(("x-forwarded-for", "198.51.100.1"), ("x-forwarded-for", "203.0.113.7")),
            ("203.0.113.7", 0),
            "http",
            id="xff-repeated-field-is-one-list",
        ),
        pytest.param(
            h(("x-forwarded-for", "127.0.0.1, 127.0.0.1")),
            ("127.0.0.1", 0),
            "http",
            id="xff-all-trusted-leftmost",
        ),
        pytest.param(
            h(("x-forwarded-for", "2001:db8::7")), ("2001:db8::7", 0), "http", id="xff-ipv6"
        ),
        pytest.param(
            h(("x-forwarded-for", "[2001:db8::7]:4711")),
            ("2001:db8::7", 4711),
            "http",
            id="xff-ipv6-bracketed-port",
        ),
        pytest.param(
            h(("x-forwarded-for", "203.0.113.7:1234")),
            ("203.0.113.7", 1234),
            "http",
            id="xff-ipv4-port",
        ),
        pytest.param(
            h(("x-forwarded-for", "203.0.113.7"), ("x-forwarded-proto", "https")),
            ("203.0.113.7", 0),
            "https",
            id="xff-and-proto",
        ),
        pytest.param(
            h(("x-forwarded-for", "203.0.113.7, 10.0.0.2"), ("x-forwarded-proto", "https, http")),
            ("10.0.0.2", 0),
            "http",
            id="xfp-aligned-with-chosen-hop",
        ),
        pytest.param(
            h(("x-forwarded-for", "1.1.1.1, 203.0.113.7"), ("x-forwarded-proto", "https")),
            ("203.0.113.7", 0),
            "https",
            id="xfp-shorter-list-uses-nearest",
        ),
        pytest.param(
            h(("x-forwarded-proto", "HTTPS")), PEER, "https", id="xfp-alone-case-insensitive"
        ),
        pytest.param(h(("x-forwarded-proto", "gopher")), PEER, "http", id="xfp-unknown-ignored"),
        pytest.param(h(("x-real-ip", "203.0.113.9")), ("203.0.113.9", 0), "http", id="real-ip"),
        pytest.param(
            h(("x-real-ip", "203.0.113.9"), ("x-forwarded-for", "203.0.113.7")),
            ("203.0.113.7", 0),
            "http",
            id="xff-before-real-ip",
        ),
        pytest.param(
            h(("forwarded", "for=203.0.113.7;proto=https")),
            ("203.0.113.7", 0),
            "https",
            id="forwarded",
        ),
        pytest.param(
            h(("forwarded", 'for="[2001:db8:cafe::17]:4711";proto=https;by=10.0.0.1')),
            ("2001:db8:cafe::17", 4711),
            "https",
            id="forwarded-quoted-ipv6-port",
        ),
        pytest.param(
            h(("forwarded", "For=198.51.100.1;Proto=https, for=203.0.113.7;proto=http")),
            ("203.0.113.7", 0),
            "http",
            id="forwarded-rightmost-untrusted-with-its-proto",
        ),
        pytest.param(
            h(("forwarded", "for=203.0.113.7;proto=https, for=127.0.0.1")),
            ("203.0.113.7", 0),
            "https",
            id="forwarded-skips-trusted-hop",
        ),
        pytest.param(h(("forwarded", "for=unknown")), None, "http", id="forwarded-unknown-client"),
        pytest.param(
            h(("forwarded", "for=_hidden")), ("_hidden", 0), "http", id="forwarded-obfuscated"
        ),
        pytest.param(
            h(("forwarded", "proto=https")), PEER, "https", id="forwarded-proto-only-keeps-peer"
        ),
        pytest.param(
            h(("forwarded", "for=198.51.100.1"), ("x-forwarded-for", "203.0.113.7")),
            ("203.0.113.7", 0),
            "http",
            id="xff-before-forwarded",
        ),
        pytest.param(h(("x-forwarded-for", "")), PEER, "http", id="xff-empty"),
    ],
)
def test_trusted_peer(headers: Headers, client: tuple[str, int] | None, scheme: str) -> None:
    assert ProxyHeaders().resolve(headers, PEER, "http") == (client, scheme)
    # The same headers again, from another peer of the same proxy: answered from the results
    # kept by the first call (SHARED also holds every case run before this one).
    other = ("127.0.0.1", 50001)
    for peer in (PEER, other):
        assert SHARED.resolve(headers, peer, "http") == (peer if client == PEER else client, scheme)


SHARED = ProxyHeaders()


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param(h(("x-forwarded-for", "203.0.113.7")), id="xff"),
        pytest.param(h(("x-forwarded-proto", "https")), id="xfp"),
        pytest.param(h(("x-real-ip", "203.0.113.7")), id="real-ip"),
        pytest.param(h(("forwarded", "for=203.0.113.7;proto=https")), id="forwarded"),
    ],
)
def test_untrusted_peer_headers_ignored(headers: Headers) -> None:
    peer = ("192.0.2.50", 4000)
    assert ProxyHeaders().resolve(headers, peer, "http") == (peer, "http")


@pytest.mark.parametrize(
    ("allow", "host", "trusted"),
    [
        pytest.param(("127.0.0.1",), "127.0.0.1", True, id="default"),
        pytest.param(("127.0.0.1",), "127.0.0.2", False, id="default-other-loopback"),
        pytest.param(("127.0.0.1",), "::ffff:127.0.0.1", True, id="ipv4-mapped"),
        pytest.param(("10.0.0.0/8",), "10.200.3.4", True, id="cidr-inside"),
        pytest.param(("10.0.0.0/8",), "11.0.0.1", False, id="cidr-outside"),
        pytest.param(("::1",), "::1", True, id="ipv6"),
        pytest.param(("fd00::/8",), "fd12:3456::1", True, id="ipv6-cidr"),
        pytest.param(("fd00::/8",), "10.0.0.1", False, id="family-mismatch"),
        pytest.param(("fe80::/10",), "fe80::1%eth0", True, id="ipv6-zone"),
        pytest.param(("127.0.0.1",), "localhost", False, id="name-never-trusted"),
        pytest.param(("*",), "192.0.2.1", True, id="star"),
        pytest.param((), "127.0.0.1", False, id="nobody"),
        pytest.param((), None, True, id="unix-socket-peer"),
    ],
)
def test_trusts(allow: tuple[str, ...], host: str | None, trusted: bool) -> None:
    proxy = ProxyHeaders(allow)
    assert proxy.trusts(host) is trusted
    assert proxy.trusts(host) is trusted  # the cached answer is the same


def test_cidr_trust_chain() -> None:
    proxy = ProxyHeaders(["127.0.0.1", "10.0.0.0/8"])
    headers = h(("x-forwarded-for", "198.51.100.1, 203.0.113.7, 10.1.2.3, 10.9.9.9"))
    assert proxy.resolve(headers, ("10.0.0.1", 1), "http") == (("203.0.113.7", 0), "http")


def test_unix_socket_peer_trusted() -> None:
    assert ProxyHeaders().resolve(h(("x-real-ip", "203.0.113.9")), None, "http") == (
        ("203.0.113.9", 0),
        "http",
    )


@pytest.mark.parametrize(
    ("proto", "scheme", "expected"),
    [
        pytest.param("https", "ws", "wss", id="https-ws"),
        pytest.param("http", "wss", "ws", id="http-wss"),
        pytest.param("wss", "ws", "wss", id="wss-ws"),
        pytest.param("http", "https", "http", id="http-https"),
    ],
)
def test_websocket_scheme(proto: str, scheme: str, expected: str) -> None:
    headers = h(("x-forwarded-proto", proto))
    assert ProxyHeaders().resolve(headers, PEER, scheme) == (PEER, expected)


def test_cache_is_bounded() -> None:
    proxy = ProxyHeaders()
    for i in range(10_000):
        proxy.trusts(f"10.{i // 65536}.{i // 256 % 256}.{i % 256}")
    assert len(proxy._cache) <= 4096
    assert proxy.trusts("127.0.0.1")


@pytest.mark.parametrize(
    "value", ["unknown", "unknown, 127.0.0.1"], ids=["unknown", "unknown-then-trusted"]
)
def test_a_kept_unknown_client_is_not_a_tcp_peers_own_address(value: str) -> None:
    """From a unix socket peer (None) the `unknown` client is None too; a TCP peer sending the
    same header must get None as well, not its own address."""
    proxy = ProxyHeaders()
    headers = h(("x-forwarded-for", value))
    assert proxy.resolve(headers, None, "http") == (None, "http")
    assert proxy.resolve(headers, PEER, "http") == (None, "http")
    assert proxy.resolve(h(("x-forwarded-proto", "https")), None, "http") == (None, "https")
    assert proxy.resolve(h(("x-forwarded-proto", "https")), PEER, "http") == (PEER, "https")


def test_long_header_values_are_resolved_but_not_kept() -> None:
    proxy = ProxyHeaders()
    chain = ", ".join(["127.0.0.1"] * 40)  # 439 bytes: resolved each time
    for client in ("203.0.113.7", "198.51.100.1"):
        forged = h(("x-forwarded-for", f"{client}, {chain}"))
        assert proxy.resolve(forged, PEER, "http") == ((client, 0), "http")
    assert proxy._resolved == {}


def test_results_kept_are_bounded() -> None:
    """X-Forwarded-For is what the client sends: a new value per request cannot grow memory."""
    proxy = ProxyHeaders()
    for i in range(10_000):
        forged = h(("x-forwarded-for", f"10.{i // 65536}.{i // 256 % 256}.{i % 256}"))
        assert proxy.resolve(forged, PEER, "http")[0] == (forged[0][1].decode(), 0)
    assert 0 < len(proxy._resolved) <= 4096


@pytest.mark.parametrize(
    ("raw", "node"),
    [
        pytest.param("1.2.3.4", ("1.2.3.4", 0), id="ipv4"),
        pytest.param(" 1.2.3.4:80 ", ("1.2.3.4", 80), id="ipv4-port"),
        pytest.param("::1", ("::1", 0), id="ipv6-bare"),
        pytest.param("[::1]", ("::1", 0), id="ipv6-brackets"),
        pytest.param('"[::1]:8080"', ("::1", 8080), id="ipv6-quoted-port"),
        pytest.param("unknown", None, id="unknown"),
        pytest.param('""', None, id="empty"),
        pytest.param("1.2.3.4:x", ("1.2.3.4", 0), id="bad-port"),
    ],
)
def test_parse_node(raw: str, node: tuple[str, int] | None) -> None:
    assert parse_node(raw) == node


def test_bad_allow_entry() -> None:
    with pytest.raises(ValueError, match="does not appear to be"):
        ProxyHeaders(["not-an-address"])


# ----------------------------------------------------------------------------- through the engine


async def report_client(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    body = json.dumps({"client": scope["client"], "scheme": scope["scheme"]}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


def through_server(allow: tuple[str, ...], headers: dict[str, str], uds: str | None = None) -> Any:
    from aioworker.http.server import start_server

    async def main() -> Any:
        settings = HttpSettings(forwarded_allow_ips=allow)
        if uds is not None:
            server = await start_server(report_client, settings, uds=uds)
            transport = httpx.AsyncHTTPTransport(uds=uds)
            url = "http://localhost/"
        else:
            server = await start_server(report_client, settings, host="127.0.0.1", port=0)
            transport = httpx.AsyncHTTPTransport()
            url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
        try:
            async with httpx.AsyncClient(transport=transport) as client:
                return (await client.get(url, headers=headers)).json()
        finally:
            server.close()
            await server.wait_closed()

    return asyncio.run(main())


SPOOF = {"x-forwarded-for": "203.0.113.7", "x-forwarded-proto": "https"}


def test_engine_applies_trusted_headers() -> None:
    seen = through_server(("127.0.0.1",), SPOOF)
    assert seen == {"client": ["203.0.113.7", 0], "scheme": "https"}


def test_engine_ignores_untrusted_peer() -> None:
    seen = through_server(("10.0.0.1",), SPOOF)
    assert seen["client"][0] == "127.0.0.1"
    assert seen["scheme"] == "http"


def test_engine_trusts_unix_socket_peer(tmp_path: Path) -> None:
    seen = through_server(("10.0.0.1",), SPOOF, uds=str(tmp_path / "s.sock"))
    assert seen == {"client": ["203.0.113.7", 0], "scheme": "https"}
