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
