"""Passing accepted connections from the master to a worker over a SOCK_SEQPACKET channel."""

from __future__ import annotations

import socket

from aioworker.supervisor import handover


def accepted_pairs(count: int) -> list[tuple[socket.socket, socket.socket]]:
    """(client, server side) pairs of real TCP connections on 127.0.0.1."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        clients = [socket.create_connection(listener.getsockname()) for _ in range(count)]
        return [(client, listener.accept()[0]) for client in clients]


def test_connections_cross_the_channel_and_stay_usable() -> None:
    master, worker = handover.channel()
    worker.setblocking(False)
    pairs = accepted_pairs(handover.MAX_BATCH + 5)  # two messages
    try:
        assert handover.send(master, [server for _, server in pairs]) == len(pairs)
        for _, server in pairs:
            server.close()  # the master's copies: the worker holds its own
        received = handover.receive(worker)
        assert len(received) == len(pairs)
        for (client, _), adopted in zip(pairs, received, strict=True):
            client.sendall(b"ping")
            assert adopted.recv(4) == b"ping"
            adopted.sendall(b"pong")
            assert client.recv(4) == b"pong"
            adopted.close()
        assert handover.receive(worker) == []
    finally:
        for client, _ in pairs:
            client.close()
        master.close()
        worker.close()


def test_send_to_a_worker_that_is_gone_passes_nothing() -> None:
    master, worker = handover.channel()
    worker.close()
    (client, server), *_ = accepted_pairs(1)
    try:
        assert handover.send(master, [server]) == 0
    finally:
        for sock in (client, server, master):
            sock.close()


def test_receive_after_the_master_closed_its_end() -> None:
    master, worker = handover.channel()
    master.close()
    try:
        assert handover.receive(worker) == []
    finally:
        worker.close()
