"""The broker against a real redis-server: reachability tracked, not probed per call."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable

import pytest

from aioworker.queue.broker import Broker, QueueFull, RedisDown
from aioworker.queue.jobs import End, Job, encode_job
from aioworker.queue.stats import StatsReader
from tests.helpers.redis import RedisServer
from tests.helpers.redis import run_in_thread as _run


def test_once_down_every_call_fails_at_once_until_redis_returns(
    redis: RedisServer,
    loop_factory: Callable[[], asyncio.AbstractEventLoop],
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> None:
        broker = Broker(redis.url)
        await broker.ping()
        redis.stop()
        with pytest.raises(RedisDown):
            await broker.ping()
        assert not broker.up
        # A Redis that accepts connections and never answers: a call that tried it would hang
        # (until the 10 s socket timeout); the tracked state answers without trying.
        with socket.create_server(("127.0.0.1", redis.port)):
            for _ in range(100):
                with pytest.raises(RedisDown):
                    await asyncio.wait_for(broker.ping(), 1.0)
        redis.start()
        await asyncio.wait_for(broker.reachable.wait(), 10.0)
        assert await broker.ping()
        await broker.close()

    with caplog.at_level(logging.WARNING, logger="aioworker.queue"):
        _run(loop_factory, scenario())
    messages = [r.getMessage().split(" at ")[0] for r in caplog.records]
    assert messages == ["redis unreachable", "redis reachable again"]


def test_submit_refuses_past_queue_max_and_keeps_what_it_accepted(
    redis: RedisServer, loop_factory: Callable[[], asyncio.AbstractEventLoop]
) -> None:
    async def scenario() -> None:
        broker = Broker(redis.url)
        accepted = []
        for i in range(5):
            fields = encode_job(Job(f"job{i}", "GET", "/", b"/", b"", ()))
            try:
                accepted.append((await broker.submit("g", fields, queue_max=3)).job_id)
            except QueueFull:
                pass
        assert accepted == ["job0", "job1", "job2"]
        await broker.close()

    _run(loop_factory, scenario())
    reader = StatsReader(redis.url)
    numbers = reader.read(["g"])
    reader.close()
    assert numbers is not None
    assert (numbers["g"].depth, numbers["g"].in_progress) == (3, 0)


def test_result_ttl_and_idempotency_ttl_are_the_expiries_redis_keeps(
    redis: RedisServer, loop_factory: Callable[[], asyncio.AbstractEventLoop]
) -> None:
    """The defaults are an hour and a day: keys expiring within 20 s come from the settings."""

    async def scenario() -> None:
        broker = Broker(redis.url, result_ttl=20.0)
        fields = encode_job(Job("ttl1", "GET", "/", b"/", b"", ()))
        await broker.submit("g", fields, queue_max=3, idempotency="k", idempotency_ttl=10.0)
        await broker.reply("ttl1", End())
        await broker.close()

    _run(loop_factory, scenario())

    def seconds_left(name: str) -> int:
        reply = redis.command("TTL", name)  # `:N\r\n`; -1 no expiry, -2 no key
        return int(reply[1:].strip())

    assert 15 <= seconds_left("aioworker:job:ttl1") <= 20
    assert 15 <= seconds_left("aioworker:reply:ttl1") <= 20
    assert 5 <= seconds_left("aioworker:idem:g:k") <= 10


def test_cancel_deletes_a_job_nobody_took_and_marks_one_a_worker_holds(
    redis: RedisServer, loop_factory: Callable[[], asyncio.AbstractEventLoop]
) -> None:
    async def scenario() -> None:
        broker = Broker(redis.url)
        await broker.join("g")
        waiting = await broker.submit(
            "g", encode_job(Job("w", "GET", "/", b"/", b"", ())), queue_max=9
        )
        taken = await broker.submit(
            "g", encode_job(Job("t", "GET", "/", b"/", b"", ())), queue_max=9
        )
        # A worker takes the older job ("w" was first: it is the one pulled) ...
        pulled = await broker.pull("g", "worker-1", 0.1)
        assert pulled is not None
        assert pulled[0] == waiting.entry
        # ... so cancelling it only marks it, and cancelling the other deletes it.
        assert not await broker.cancel("g", "w", waiting.entry)
        assert await broker.cancel("g", "t", taken.entry)
        assert await broker.pull("g", "worker-1", 0.1) is None
        # worker-1 died: the job is claimed by another, which counts the attempt and sees the mark.
        claimed = await broker.claim("g", "worker-2", 0.0)
        assert claimed is not None
        assert await broker.redelivered("g", "w") == (2, True)
        await broker.close()

    _run(loop_factory, scenario())
    assert redis.command("HGET", "aioworker:stats:g", "cancelled") == b"$1\r\n1\r\n"
    assert redis.command("XLEN", "aioworker:queue:g") == b":1\r\n"
