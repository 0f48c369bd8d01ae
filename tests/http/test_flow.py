"""Flow control: a 1 GiB upload to a slow app and a 1 GiB download to a slow reader keep the
server's memory bounded. The server runs in a subprocess so its peak RSS (VmHWM) is its own."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.child import start_ready

GIB = 1 << 30
BLOCK = bytes(range(256)) * 4096  # 1 MiB
BLOCKS = GIB // len(BLOCK)
LIMIT_MB = 150
PAUSE = 1.0  # seconds the slow side stalls: an unbounded server would buffer ~1 GiB by then


def _status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise AssertionError(f"{key} not in /proc/{pid}/status")


@pytest.fixture
def server_process(loop_name: str) -> Iterator[tuple[subprocess.Popen[str], int]]:
    proc, port = start_ready("tests.apps.flow_server", loop_name, str(PAUSE))
    try:
        yield proc, port
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


def _read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed before the response head: {data!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


@pytest.mark.slow
def test_upload_1gib_bounded_memory(server_process: tuple[subprocess.Popen[str], int]) -> None:
    proc, port = server_process
    baseline = _status_kb(proc.pid, "VmRSS")
    expected_crc = 0
    for _ in range(BLOCKS):
        expected_crc = zlib.crc32(BLOCK, expected_crc)
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % GIB)
        peak_during = 0
        for i in range(BLOCKS):
            sock.sendall(BLOCK)
            if i % 64 == 0:
                peak_during = max(peak_during, _status_kb(proc.pid, "VmRSS"))
        head, rest = _read_head(sock)
        assert head.startswith(b"HTTP/1.1 200 "), head
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        while len(rest) < length:
            rest += sock.recv(65536)
    elapsed = time.monotonic() - start
    result = json.loads(rest)
    assert result == {"total": GIB, "crc": expected_crc}
    peak = _status_kb(proc.pid, "VmHWM")
    print(f"upload: {elapsed:.1f}s, baseline {baseline // 1024} MB, peak {peak // 1024} MB")
    assert peak < LIMIT_MB * 1024, f"server peak RSS {peak // 1024} MB for a 1 GiB upload"
    assert peak_during < LIMIT_MB * 1024


@pytest.mark.slow
def test_download_1gib_to_slow_reader(server_process: tuple[subprocess.Popen[str], int]) -> None:
    proc, port = server_process
    baseline = _status_kb(proc.pid, "VmRSS")
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
        sock.sendall(b"GET /download?%d HTTP/1.1\r\nHost: t\r\n\r\n" % BLOCKS)
        head, rest = _read_head(sock)
        assert head.startswith(b"HTTP/1.1 200 ")
        assert b"content-length: %d" % GIB in head.lower()
        # The slow reader stalls (this is the behaviour under test, not a synchronisation):
        # meanwhile an unbounded server would queue the whole body in memory.
        deadline = time.monotonic() + PAUSE
        stalled_peak = 0
        while time.monotonic() < deadline:
            stalled_peak = max(stalled_peak, _status_kb(proc.pid, "VmRSS"))
            time.sleep(0.05)
        received = len(rest)
        crc = zlib.crc32(rest)
        buf = bytearray(1 << 20)
        view = memoryview(buf)
        while received < GIB:
            n = sock.recv_into(view)
            assert n, f"closed after {received} bytes"
            crc = zlib.crc32(view[:n], crc)
            received += n
    elapsed = time.monotonic() - start
    expected_crc = 0
    for _ in range(BLOCKS):
        expected_crc = zlib.crc32(BLOCK, expected_crc)
    assert received == GIB
    assert crc == expected_crc
    peak = _status_kb(proc.pid, "VmHWM")
    print(f"download: {elapsed:.1f}s, baseline {baseline // 1024} MB, peak {peak // 1024} MB")
    assert peak < LIMIT_MB * 1024, f"server peak RSS {peak // 1024} MB for a 1 GiB download"
    assert stalled_peak < LIMIT_MB * 1024


@pytest.mark.slow
def test_pipelined_flood_to_stalled_reader(
    server_process: tuple[subprocess.Popen[str], int],
) -> None:
    """50,000 pipelined requests (800 MB of responses) from a client that stalls reading."""
    proc, port = server_process
    count = 50_000
    request = b"GET /small HTTP/1.1\r\nHost: t\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sender = threading.Thread(target=sock.sendall, args=(request * count,), daemon=True)
        sender.start()
        deadline = time.monotonic() + PAUSE  # stall (the behaviour under test)
        stalled_peak = 0
        while time.monotonic() < deadline:
            stalled_peak = max(stalled_peak, _status_kb(proc.pid, "VmRSS"))
            time.sleep(0.05)
        buf = bytearray(1 << 20)
        received = 0
        expected = count * (16384 + len(b"content-length: 16384\r\n"))
        while received < expected:
            n = sock.recv_into(buf)
            assert n, f"closed after {received} bytes"
            received += n
        sender.join(30)
    peak = _status_kb(proc.pid, "VmHWM")
    assert stalled_peak < LIMIT_MB * 1024
    assert peak < LIMIT_MB * 1024, f"server peak RSS {peak // 1024} MB for a pipelined flood"
