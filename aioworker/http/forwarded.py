"""Trusted proxy headers: the client address and scheme a trusted front proxy reports.

Pure functions of the request head, no I/O. The engine asks ``trusts(peer)`` once per connection
and, for a trusted peer, ``resolve(headers, client, scheme)`` once per request to build the ASGI
scope's ``client`` and ``scheme``. From any other peer the headers are ignored: anyone can send
``X-Forwarded-For: 10.0.0.1``, only a proxy we trust can vouch for it.

Headers, in the order they are consulted (the first present wins):

``X-Forwarded-For`` (+ ``X-Forwarded-Proto``)
    What nginx, HAProxy and the cloud balancers append. The list is walked from the right and the
    first address that is *not* a trusted proxy is the client. Every proxy appends the peer it
    saw, so the rightmost entries were written by proxies we trust; everything left of the first
    untrusted hop was written by that untrusted party and may be forged (a client sending
    ``X-Forwarded-For: 1.2.3.4`` through nginx arrives as ``1.2.3.4, <real address>``).
    Taking the leftmost entry, as naive code does, lets any client pick its own address.
``Forwarded`` (RFC 7239)
    The standard form, ``for=192.0.2.1;proto=https, for="[2001:db8::1]:4711"``: the same
    right-to-left walk over its elements; the chosen element's ``proto`` is the scheme.
``X-Real-IP``
    A single address set by the nearest proxy; used only when neither list is present.

A proxy must overwrite or strip the headers of this list it does not set itself, or a client can
send them through it; the nginx config aioworker generates sets ``X-Forwarded-For``, ``X-Real-IP``
and ``X-Forwarded-Proto`` and removes ``Forwarded``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

__all__ = ["ProxyHeaders", "parse_node"]

Address = tuple[str, int]
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_XFF = b"x-forwarded-for"
_XFP = b"x-forwarded-proto"
_FORWARDED = b"forwarded"
_REAL_IP = b"x-real-ip"
# A frozenset lookup per header keeps the common case (no proxy headers) at one hash per header.
_NAMES = frozenset((_XFF, _XFP, _FORWARDED, _REAL_IP))
_SCHEMES = {"http": "http", "https": "https", "ws": "http", "wss": "https"}
# Bounds the per-address cache: addresses inside X-Forwarded-For are client-chosen, so an
# unbounded cache would let a client grow the worker's memory one forged address at a time.
_CACHE_LIMIT = 4096
# Header values longer than this in all are resolved each time, not kept: 4,096 kept results of
# at most 256 bytes of values each bound the memory a client can make a worker hold to ~1 MiB.
_KEPT_BYTES = 256
_PEER: Address = ("peer", -1)  # the stand-in for the connection's own peer in kept results


def parse_node(value: str) -> Address | None:
    """Parse one hop: ``1.2.3.4``, ``1.2.3.4:80``, ``::1``, ``[::1]:80``, ``"[::1]"``.

    Returns ``(host, port)`` with port 0 when absent; None for ``unknown`` or an empty value.
    Obfuscated identifiers (RFC 7239 ``_hidden``) and names are kept as the host.
    """
    node = value.strip()
    if node[:1] == '"':
        node = node.strip('"').strip()
    if ":" not in node:  # IPv4 or a name, the common case
        if not node or node.lower() == "unknown":
            return None
        return (node, 0)
    port = 0
    if node.startswith("["):
        host, _, rest = node[1:].partition("]")
        if rest.startswith(":") and rest[1:].isdigit():
            port = int(rest[1:])
    elif node.count(":") == 1:
        host, _, port_text = node.partition(":")
        if port_text.isdigit():
            port = int(port_text)
    else:
        host = node  # bare IPv6 (several colons)
    return (host, port) if host else None


class ProxyHeaders:
    """Which peers are trusted proxies, and what their headers say about the client."""

    __slots__ = ("_addresses", "_cache", "_everyone", "_networks", "_resolved")

    def __init__(self, allow: Sequence[str] = ("127.0.0.1",)) -> None:
        self._everyone = "*" in allow
        self._addresses: set[str] = set()
        self._networks: list[_Network] = []
        for entry in allow:
            if entry == "*":
                continue
            network = ipaddress.ip_network(entry.strip(), strict=False)
            if network.num_addresses == 1:
                self._addresses.add(str(network.network_address))
            else:
                self._networks.append(network)
        self._cache: dict[str, bool] = {}
        # (connection scheme, the proxy headers' items) -> (whether the client stays the
        # peer, the client otherwise, scheme). Behind a proxy, a client's requests repeat the
        # same values: a hit costs ~2 us against ~5 us for the walk.
        self._resolved: dict[tuple[object, ...], tuple[bool, Address | None, str]] = {}

    def trusts(self, host: str | None) -> bool:
        """Whether a peer is a trusted proxy.

        None is a unix socket peer: only processes the socket file's permissions admit can
        connect, so it is as local as 127.0.0.1 and trusted (the front proxy on the same
        machine is the usual reason to listen on a unix socket at all).
        """
        if host is None or self._everyone:
            return True
        cached = self._cache.get(host)
        if cached is None:
            cached = self._check(host)
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[host] = cached
        return cached

    def _check(self, host: str) -> bool:
        try:
            ip = ipaddress.ip_address(host.split("%", 1)[0])  # drop an IPv6 zone (fe80::1%eth0)
        except ValueError:
            return False  # names and obfuscated identifiers are never trusted
        candidates = [ip]
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            candidates.append(ip.ipv4_mapped)  # ::ffff:127.0.0.1 on a dual-stack socket
        for candidate in candidates:
            if str(candidate) in self._addresses:
                return True
            for network in self._networks:
                if candidate.version == network.version and candidate in network:
                    return True
        return False

    def resolve(
        self, headers: list[tuple[bytes, bytes]], client: Address | None, scheme: str
    ) -> tuple[Address | None, str]:
        """The scope's ``(client, scheme)`` after the proxy headers of a trusted peer.

        ``headers`` are the request's (lower-case name, value) pairs; ``scheme`` is the
        connection's ("http", "https", "ws" or "wss"). Untrusted peers get both back unchanged.
        """
        found: dict[bytes, bytes] | None = None
        size = 0
        for name, value in headers:
            if name in _NAMES:
                if found is None:
                    found = {}
                size += len(value)
                # Repeated fields form one list (RFC 9110 section 5.3).
                found[name] = found[name] + b"," + value if name in found else value
        if found is None or not self.trusts(client[0] if client is not None else None):
            return client, scheme
        if size > _KEPT_BYTES:  # a long chain: resolved, never kept
            return self._resolve(found, client, scheme)
        key = (scheme, *found.items())
        known = self._resolved.get(key)
        if known is None:
            # Resolved for a stand-in peer, so that "the peer's own address" is told apart from
            # a client the headers name (None for an `unknown` hop, also a unix peer's address).
            resolved, new_scheme = self._resolve(found, _PEER, scheme)
            known = (resolved is _PEER, resolved, new_scheme)
            if len(self._resolved) >= _CACHE_LIMIT:  # the values are client-chosen: bounded
                self._resolved.clear()
            self._resolved[key] = known
        return (client if known[0] else known[1]), known[2]

    def _resolve(
        self, found: dict[bytes, bytes], client: Address | None, scheme: str
    ) -> tuple[Address | None, str]:
        proto: str | None = None
        if _XFF in found:
            hops = _split(found[_XFF])
            index, node = self._client_hop(hops)
            if index >= 0:
                client = node
                if _XFP in found:
                    protos = _split(found[_XFP])
                    # Each proxy appends one entry to both lists, so the entry at the same
                    # position is the scheme that hop spoke; when the lists disagree in length,
                    # trust only the nearest proxy's entry.
                    if protos:
                        proto = protos[index] if len(protos) == len(hops) else protos[-1]
        elif _FORWARDED in found:
            elements = [_forwarded_element(e) for e in _split(found[_FORWARDED])]
            if any(has_for for has_for, _, _ in elements):
                _, client, proto = elements[self._node_index([n for _, n, _ in elements])]
            elif elements:
                proto = elements[-1][2]  # only proto= given: the client address stays the peer
        else:
            if _REAL_IP in found:
                real = parse_node(found[_REAL_IP].decode("latin-1"))
                if real is not None:
                    client = real
            protos = _split(found.get(_XFP, b""))
            if protos:
                proto = protos[-1]

        if proto is not None:
            scheme = _scheme(proto.strip().lower(), scheme)
        return client, scheme

    def _client_hop(self, hops: list[str]) -> tuple[int, Address | None]:
        """The rightmost hop that is not a trusted proxy (leftmost if all are): index, node."""
        # Parsed lazily from the right: behind one proxy only the last hop is ever looked at.
        for index in range(len(hops) - 1, -1, -1):
            node = parse_node(hops[index])
            if node is None or not self.trusts(node[0]):
                return index, node
        return (0, parse_node(hops[0])) if hops else (-1, None)

    def _node_index(self, nodes: list[Address | None]) -> int:
        """_client_hop for hops already parsed (at least one): the index."""
        for index in range(len(nodes) - 1, -1, -1):
            node = nodes[index]
            if node is None or not self.trusts(node[0]):
                return index
        return 0


def _split(value: bytes) -> list[str]:
    text = value.decode("latin-1")
    if "," not in text:
        return [text] if text.strip() else []
    return [part for part in text.split(",") if part.strip()]


def _forwarded_element(element: str) -> tuple[bool, Address | None, str | None]:
    """``for=...;proto=...;by=...`` -> (has a for=, the for node, proto)."""
    has_for = False
    node: Address | None = None
    proto: str | None = None
    for pair in element.split(";"):
        key, sep, value = pair.partition("=")
        if not sep:
            continue
        key = key.strip().lower()
        if key == "for":
            has_for = True
            node = parse_node(value)
        elif key == "proto":
            proto = value.strip().strip('"')
    return has_for, node, proto


def _scheme(proto: str, current: str) -> str:
    """Map a forwarded proto onto the connection's kind: https upgrades ws to wss."""
    base = _SCHEMES.get(proto)
    if base is None:
        return current  # not a scheme we know: keep what the connection says
    if current in ("ws", "wss"):
        return "wss" if base == "https" else "ws"
    return base
