"""The Redis client (aioworker/queue/resp.py) against a real redis-server."""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from aioworker.queue.broker import Broker
from aioworker.queue.jobs import Job, encode_job
from aioworker.queue.resp import Address, Client, ReplyError, SyncClient, parse_url
from tests.helpers.redis import RedisServer, run_in_thread
from tests.helpers.tls import self_signed

LoopFactory = Callable[[], asyncio.AbstractEventLoop]


@pytest.mark.parametrize(
    ("url", "address"),
    [
        pytest.param("redis://10.0.0.2:6380/3", Address("10.0.0.2", 6380, db=3), id="host-port-db"),
        pytest.param("redis://localhost", Address("localhost"), id="defaults"),
        pytest.param(
            "redis://:s%40cret@h/1", Address("h", db=1, password="s@cret"), id="password-quoted"
        ),
        pytest.param(
            "redis://me:pw@h:1/0", Address("h", 1, username="me", password="pw"), id="acl"
        ),
        pytest.param("rediss://h:6390/0", Address("h", 6390, tls=True), id="tls"),
        pytest.param(
            "unix:///run/redis.sock?db=2", Address(path="/run/redis.sock", db=2), id="unix"
        ),
    ],
)
def test_urls(url: str, address: Address) -> None:
    assert parse_url(url) == address


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://h:1/0", "is not redis://"),
        ("unix://", "names no socket path"),
        ("redis://h/x", "invalid literal"),
    ],
)
def test_bad_urls_are_refused(url: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_url(url)


def test_concurrent_callers_share_one_connection_and_get_their_own_replies(
    redis: RedisServer, loop_factory: LoopFactory
) -> None:
    async def scenario() -> None:
        client = Client(redis.url)
        replies = await asyncio.gather(*(client.execute("ECHO", str(i)) for i in range(500)))
        assert replies == [str(i).encode() for i in range(500)]
        # A caller that gave up: its answer is dropped, the next caller gets its own.
        gave_up = asyncio.ensure_future(client.execute("ECHO", "lost"))
        await asyncio.sleep(0)  # the command is on the wire
        gave_up.cancel()
        assert await client.execute("ECHO", "mine") == b"mine"
        with pytest.raises(ReplyError, match="unknown command"):
            await client.execute("NO-SUCH-COMMAND")
        pipelined = await client.pipeline([["SET", "k", "1"], ["INCR", "k", "2"], ["GET", "k"]])
        assert pipelined[0] == b"OK"
        assert isinstance(pipelined[1], ReplyError)
        assert pipelined[2] == b"1"
        await client.close()

    run_in_thread(loop_factory, scenario())
    assert redis.command("CLIENT", "LIST").count(b"\n") >= 1


def test_login_and_database_from_the_url(redis: RedisServer, loop_factory: LoopFactory) -> None:
    redis.command("CONFIG", "SET", "requirepass", "pw")
    url = f"redis://:pw@127.0.0.1:{redis.port}/3"

    async def scenario() -> None:
        client = Client(url)
        assert await client.execute("SET", "in-db-3", "yes") == b"OK"
        assert await client.blocking("BLPOP", "empty", 0.05, block=0.05) is None
        await client.close()
        wrong = Client(f"redis://:nope@127.0.0.1:{redis.port}/0")
        with pytest.raises(ConnectionError, match="refused the login"):
            await wrong.execute("PING")
        await wrong.close()

    run_in_thread(loop_factory, scenario())
    sync = SyncClient(url, timeout=1.0)
    assert sync.pipeline([["GET", "in-db-3"], ["DBSIZE"]]) == [b"yes", 1]
    sync.close()


def test_a_unix_socket_url_reaches_redis_with_its_database(
    redis: RedisServer, loop_factory: LoopFactory
) -> None:
    url = redis.unix_url + "?db=4"

    async def scenario() -> None:
        client = Client(url)
        assert await client.execute("SET", "over-unix", "yes") == b"OK"
        assert await client.blocking("BLPOP", "empty", 0.05, block=0.05) is None
        info = await client.execute("CLIENT", "INFO")
        assert b"db=4" in info
        assert b"laddr=" + redis.unix_url[len("unix://") :].encode() in info
        await client.close()

    run_in_thread(loop_factory, scenario())
    sync = SyncClient(url, timeout=1.0)
    assert sync.pipeline([["GET", "over-unix"], ["DBSIZE"]]) == [b"yes", 1]
    sync.close()


def test_a_rediss_url_speaks_tls_to_a_server_it_verifies(
    tmp_path: Path, loop_factory: LoopFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """rediss:// verifies the server against the default trust store, which SSL_CERT_FILE
    names for a private CA (here the self-signed certificate itself)."""
    cert, key = self_signed(tmp_path)
    server = RedisServer(tls=(cert, key))
    server.start()
    try:
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))

        async def scenario() -> None:
            client = Client(server.tls_url)
            assert await client.execute("SET", "over-tls", "yes") == b"OK"
            assert await client.blocking("BLPOP", "empty", 0.05, block=0.05) is None
            await client.close()

        run_in_thread(loop_factory, scenario())
        sync = SyncClient(server.tls_url, timeout=1.0)
        assert sync.pipeline([["GET", "over-tls"]]) == [b"yes"]
        sync.close()

        monkeypatch.delenv("SSL_CERT_FILE")  # the certificate is trusted no more: refused

        async def untrusted() -> None:
            client = Client(server.tls_url)
            with pytest.raises(ssl.SSLCertVerificationError):
                await client.execute("PING")
            await client.close()

        run_in_thread(loop_factory, untrusted())
        with pytest.raises(ssl.SSLCertVerificationError):
            SyncClient(server.tls_url, timeout=1.0).pipeline([["PING"]])
    finally:
        server.stop()
        shutil.rmtree(server.directory, ignore_errors=True)


def test_a_redis_that_never_answers_fails_the_call_after_the_timeout(
    loop_factory: LoopFactory,
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]

        async def scenario() -> None:
            client = Client(f"redis://127.0.0.1:{port}/0", timeout=0.3)
            began = time.monotonic()
            with pytest.raises(ConnectionError, match="did not answer in time"):
                await client.execute("PING")
            assert time.monotonic() - began < 2.0
            await client.close()

        run_in_thread(loop_factory, scenario())
        with pytest.raises(ConnectionError):
            SyncClient(f"redis://127.0.0.1:{port}/0", timeout=0.3).pipeline([["PING"]])


def test_submissions_survive_a_flushed_script_cache(
    redis: RedisServer, loop_factory: LoopFactory
) -> None:
    """EVALSHA answers NOSCRIPT after a Redis restart or SCRIPT FLUSH: loaded again, sent again."""

    async def scenario() -> None:
        broker = Broker(redis.url)
        first = encode_job(Job("before", "GET", "/", b"/", b"", ()))
        assert (await broker.submit("g", first, queue_max=10)).job_id == "before"
        assert redis.command("SCRIPT", "FLUSH") == b"+OK\r\n"
        jobs = [encode_job(Job(f"after{i}", "GET", "/", b"/", b"", ())) for i in range(3)]
        done = await asyncio.gather(*(broker.submit("g", job, queue_max=10) for job in jobs))
        assert [s.job_id for s in done] == ["after0", "after1", "after2"]
        await broker.close()

    run_in_thread(loop_factory, scenario())
    assert redis.command("XLEN", "aioworker:queue:g") == b":4\r\n"
