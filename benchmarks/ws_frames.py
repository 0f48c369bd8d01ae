"""Which sans-IO WebSocket library frames fastest: websockets' protocol layer or wsproto.

Run: `python -m benchmarks.ws_frames` (both libraries installed; `pip install websockets
wsproto`). For each library and message size it parses masked client frames the way a server
receives them (unmask + frame events) and serialises unmasked server frames the way a server
answers, and prints messages per second, the median of five rounds. No sockets: this is the
cost the frame library adds per message, which is what the choice decides.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

from websockets.frames import Opcode
from websockets.protocol import Protocol, Side
from wsproto import ConnectionType
from wsproto.connection import Connection
from wsproto.events import BytesMessage

SIZES = ((16, 20_000), (1 << 20, 40))  # (message bytes, messages per round)
ROUNDS = 5


def _websockets_case(size: int, count: int) -> tuple[Callable[[], None], Callable[[], None]]:
    client = Protocol(Side.CLIENT, max_size=None)
    payload = b"x" * size
    for _ in range(count):
        client.send_binary(payload)
    wire = b"".join(client.data_to_send())

    def parse() -> None:
        server = Protocol(Side.SERVER, max_size=None)
        server.receive_data(wire)
        events = server.events_received()
        assert len(events) == count
        assert events[0].opcode is Opcode.BINARY

    def serialise() -> None:
        server = Protocol(Side.SERVER, max_size=None)
        for _ in range(count):
            server.send_binary(payload)
            server.data_to_send()

    return parse, serialise


def _wsproto_case(size: int, count: int) -> tuple[Callable[[], None], Callable[[], None]]:
    client = Connection(ConnectionType.CLIENT)
    payload = b"x" * size
    wire = b"".join(client.send(BytesMessage(data=payload)) for _ in range(count))

    def parse() -> None:
        server = Connection(ConnectionType.SERVER)
        server.receive_data(wire)
        events = list(server.events())
        assert len(events) >= count

    def serialise() -> None:
        server = Connection(ConnectionType.SERVER)
        for _ in range(count):
            server.send(BytesMessage(data=payload))

    return parse, serialise


def _rate(run: Callable[[], None], count: int) -> float:
    rates = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        run()
        rates.append(count / (time.perf_counter() - start))
    return statistics.median(rates)


def main() -> None:
    print(f"{'library':<12}{'message':>10}{'parse msg/s':>16}{'serialise msg/s':>18}")
    for name, case in (("websockets", _websockets_case), ("wsproto", _wsproto_case)):
        for size, count in SIZES:
            parse, serialise = case(size, count)
            label = "1 MiB" if size == 1 << 20 else f"{size} B"
            print(
                f"{name:<12}{label:>10}{_rate(parse, count):>16,.0f}"
                f"{_rate(serialise, count):>18,.0f}"
            )


if __name__ == "__main__":
    main()
