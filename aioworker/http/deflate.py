"""permessage-deflate (RFC 7692) for WebSockets: agreeing on it, and zlib state made late.

Only imported with the ws extra installed (websocket.py imports it when wsframes.py found
websockets).
"""

from __future__ import annotations

import zlib
from typing import Any

from websockets.exceptions import InvalidHandshake, NegotiationError
from websockets.extensions.permessage_deflate import (
    PerMessageDeflate,
    ServerPerMessageDeflateFactory,
)
from websockets.headers import build_extension, parse_extension
from websockets.protocol import Protocol

__all__ = ["negotiate_deflate"]


def negotiate_deflate(offer: str, frames: Protocol) -> str:
    """Agree on permessage-deflate (RFC 7692) if offered; '' when not, or not acceptably."""
    # websockets' own server defaults: 4 KiB windows and memLevel 5 keep a compressing
    # connection at tens of KiB instead of the ~300 KiB zlib takes by default.
    factory = ServerPerMessageDeflateFactory(
        server_max_window_bits=12, client_max_window_bits=12, compress_settings={"memLevel": 5}
    )
    try:
        offers = parse_extension(offer)
    except InvalidHandshake:
        return ""
    for name, params in offers:
        if name != factory.name:
            continue
        try:
            response, agreed = factory.process_request_params(params, [])
        except NegotiationError:
            continue
        frames.extensions = [
            _LazyDeflate(
                agreed.remote_no_context_takeover,
                agreed.local_no_context_takeover,
                agreed.remote_max_window_bits,
                agreed.local_max_window_bits,
                agreed.compress_settings,
            )
        ]
        return build_extension([(name, response)])
    return ""


class _LazyDeflate(PerMessageDeflate):
    """PerMessageDeflate that makes its zlib objects at the first compressed message.

    websockets makes both at once; an idle WebSocket then holds ~30 KiB of zlib state
    (40.3 KiB per idle WebSocket with deflate negotiated, 5,000 open, vs 8.2 without;
    `python -m benchmarks.websocket --deflate`). Most WebSockets of a push service stay
    idle, so they are made when first needed, as wsproto does.
    """

    def __init__(
        self,
        remote_no_context_takeover: bool,
        local_no_context_takeover: bool,
        remote_max_window_bits: int,
        local_max_window_bits: int,
        compress_settings: dict[Any, Any] | None = None,
    ) -> None:
        # With both "no context takeover" the parent makes no zlib object; then the real
        # flags are set, and __getattr__ makes the objects the parent would have made.
        super().__init__(
            True, True, remote_max_window_bits, local_max_window_bits, compress_settings
        )
        self.remote_no_context_takeover = remote_no_context_takeover
        self.local_no_context_takeover = local_no_context_takeover

    def __getattr__(self, name: str) -> Any:
        # Only called for a missing attribute: the first use of decoder or encoder.
        if name == "decoder":
            self.decoder = zlib.decompressobj(wbits=-self.remote_max_window_bits)
            return self.decoder
        if name == "encoder":
            self.encoder = zlib.compressobj(
                wbits=-self.local_max_window_bits, **self.compress_settings
            )
            return self.encoder
        raise AttributeError(name)
