"""Listeners: per-slot SO_REUSEPORT sockets, shared sockets, unix sockets, refusing a taken port."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from aioworker import sockets
from aioworker.config import GroupSettings, parse_listen
from aioworker.sockets import BindError, bind_group, bind_listen, describe, foreign_listeners
from tests.helpers.ports import other_listener


def group(listen: str, count: int, reuse_port: bool = True) -> GroupSettings:
    return GroupSettings(name="web", app="m:a", listen=listen, count=count, reuse_port=reuse_port)


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5)


def test_reuse_port_binds_one_socket_per_slot_on_the_kernel_chosen_port() -> None:
    bound = bind_group(group("http://127.0.0.1:0", 3))
    try:
        assert len(bound.sockets) == 3
        ports = {s.getsockname()[1] for s in bound.sockets}
        assert ports == {bound.port}
        assert bound.port != 0
        assert bound.url == f"http://127.0.0.1:{bound.port}"
        assert all(s.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) for s in bound.sockets)
        assert not any(s.get_inheritable() for s in bound.sockets)
        # Growing the group binds another socket on the same port.
        extra = bound.for_slot(4)
        assert extra.getsockname()[1] == bound.port
        assert len(bound.sockets) == 5
        bound.shrink(2)
        assert len(bound.sockets) == 2
    finally:
        bound.close()


def test_shared_socket_serves_every_slot() -> None:
    bound = bind_group(group("http://127.0.0.1:0", 3, reuse_port=False))
    try:
        assert len(bound.sockets) == 1
        assert bound.for_slot(0) is bound.for_slot(2)
        assert not bound.sockets[0].getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)
    finally:
        bound.close()


def test_queued_connection_survives_on_the_listener_the_master_keeps() -> None:
    bound = bind_group(group("http://127.0.0.1:0", 1))
    try:
        client = connect(bound.port)  # queued in the kernel: nobody accepts yet
        conn, _ = bound.sockets[0].accept()
        client.sendall(b"ping")
        assert conn.recv(4) == b"ping"
        conn.close()
        client.close()
    finally:
        bound.close()


@pytest.mark.parametrize("reuse_port", [True, False], ids=["reuse-port", "shared"])
def test_refuses_a_port_another_process_holds(reuse_port: bool) -> None:
    with other_listener() as other:
        port = other.getsockname()[1]
        with pytest.raises(BindError, match=f"http://127.0.0.1:{port}: address already in use"):
            bind_group(group(f"http://127.0.0.1:{port}", 2, reuse_port=reuse_port))


def test_unix_socket_replaces_a_stale_file_and_refuses_a_live_one(tmp_path: Path) -> None:
    path = tmp_path / "app.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()  # the file stays, nobody listens
    bound = bind_group(group(f"unix:{path}", 2))
    try:
        assert len(bound.sockets) == 1
        assert describe(bound.sockets[0]) == f"unix:{path}"
        assert oct(os.stat(path).st_mode & 0o777) == oct(0o666)
        with pytest.raises(BindError, match="already in use"):
            bind_listen(parse_listen(f"unix:{path}"))
    finally:
        bound.close()
    assert not path.exists()


def test_unix_path_that_is_not_a_socket_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_text("data")
    with pytest.raises(BindError, match="exists and is not a socket"):
        bind_listen(parse_listen(f"unix:{path}"))
    assert path.read_text() == "data"


def test_unavailable_address_names_the_listen_url() -> None:
    with pytest.raises(BindError, match=r"http://192\.0\.2\.1:\d+: address not available"):
        bind_listen(parse_listen("http://192.0.2.1:8123"))


@pytest.mark.parametrize(
    ("listen", "family"),
    [
        pytest.param("http://[::1]:0", socket.AF_INET6, id="ipv6"),
        pytest.param("http://localhost:0", socket.AF_INET, id="name"),
    ],
)
def test_ipv6_and_host_names(listen: str, family: socket.AddressFamily) -> None:
    bound = bind_group(group(listen, 2))
    try:
        assert {s.family for s in bound.sockets} == {family}
        assert len({s.getsockname()[1] for s in bound.sockets}) == 1
        host = "::1" if family == socket.AF_INET6 else "127.0.0.1"
        with socket.create_connection((host, bound.port), timeout=5):
            pass
    finally:
        bound.close()


def test_a_second_copy_that_binds_between_probe_and_bind_is_still_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The race made certain: the probe ran before the other copy bound, so it saw nothing.
    monkeypatch.setattr(sockets, "probe_free", lambda host, port: None)
    with other_listener() as other:
        port = other.getsockname()[1]
        with pytest.raises(BindError, match=f"http://127.0.0.1:{port}: address already in use"):
            bind_group(group(f"http://127.0.0.1:{port}", 2))
        # Our own listeners alone are not foreign.
        bound, elsewhere = _group_and_127_0_0_2_on_its_port()
        try:
            assert foreign_listeners(port, bound.sockets) == [os.fstat(other.fileno()).st_ino]
            # Another address on that port shares nothing with us: not foreign.
            elsewhere.listen()
            assert foreign_listeners(bound.port, bound.sockets) == []
        finally:
            elsewhere.close()
            bound.close()


def _group_and_127_0_0_2_on_its_port() -> tuple[sockets.GroupSockets, socket.socket]:
    """A group of 3 on a kernel-chosen port, with that port free on 127.0.0.2 (another
    process's tests may hold it there: then another port)."""
    for _ in range(20):
        bound = bind_group(group("http://127.0.0.1:0", 3))
        assert foreign_listeners(bound.port, bound.sockets) == []
        elsewhere = socket.socket()
        try:
            elsewhere.bind(("127.0.0.2", bound.port))
        except OSError:
            elsewhere.close()
            bound.close()
            continue
        return bound, elsewhere
    raise AssertionError("no port was free on both 127.0.0.1 and 127.0.0.2")


def landed(bound: sockets.GroupSockets, connections: int = 60) -> dict[int, int]:
    """Open `connections` and count, per slot, how many each listener's queue received."""
    clients = [connect(bound.port) for _ in range(connections)]
    counts: dict[int, int] = {}
    try:
        for slot, listener in enumerate(bound.sockets):
            listener.setblocking(False)
            while True:
                try:
                    accepted, _ = listener.accept()
                except BlockingIOError:
                    break
                accepted.close()
                counts[slot] = counts.get(slot, 0) + 1
    finally:
        for client in clients:
            client.close()
    assert sum(counts.values()) == connections
    return counts


@pytest.mark.parametrize(
    "slots",
    [pytest.param((2,), id="one"), pytest.param((0, 2), id="two-of-three"), (1, 2), (0, 1, 2)],
)
def test_steering_sends_new_connections_only_to_the_given_slots(slots: tuple[int, ...]) -> None:
    bound = bind_group(group("http://127.0.0.1:0", 3))
    try:
        assert bound.steer(slots)
        assert bound.steered == slots
        counts = landed(bound)
        assert set(counts) == set(slots)  # 60 connections: each slot gets some (p ~ 1e-18)
    finally:
        bound.close()


def test_steering_to_no_slot_leaves_the_choice_to_the_kernel_hash() -> None:
    bound = bind_group(group("http://127.0.0.1:0", 3))
    try:
        assert bound.steer((1,))
        assert set(landed(bound, 20)) == {1}
        assert bound.steer(())
        assert len(landed(bound)) > 1
    finally:
        bound.close()


def test_steering_needs_per_slot_sockets() -> None:
    bound = bind_group(group("http://127.0.0.1:0", 2, reuse_port=False))
    try:
        assert not bound.steer((0,))
        assert bound.steered is None
    finally:
        bound.close()


@pytest.mark.parametrize(
    ("slots", "program"),
    [
        ((), [(0x06, 0, 0, 0xFFFFFFFF)]),
        ((3,), [(0x06, 0, 0, 3)]),
        ((0, 1), [(0x20, 0, 0, 0xFFFFF038), (0x94, 0, 0, 2), (0x16, 0, 0, 0)]),
        (
            (0, 2, 5),
            [
                (0x20, 0, 0, 0xFFFFF038),
                (0x94, 0, 0, 3),
                (0x15, 0, 1, 0),
                (0x06, 0, 0, 0),
                (0x15, 0, 1, 1),
                (0x06, 0, 0, 2),
                (0x06, 0, 0, 5),
            ],
        ),
    ],
)
def test_selector_program(slots: tuple[int, ...], program: list[tuple[int, int, int, int]]) -> None:
    assert sockets.selector_program(slots) == program


def test_shrink_closes_from_the_top_and_keeps_held_slots() -> None:
    bound = bind_group(group("http://127.0.0.1:0", 4))
    try:
        bound.shrink(1, held={2})
        assert len(bound.sockets) == 3  # slot 3 closed; 2 is held, so 1 stays below it
        bound.shrink(1)
        assert len(bound.sockets) == 1
    finally:
        bound.close()
