"""Redis away, a full queue, two masters sharing one Redis: queued routes fail fast and cleanly."""

from __future__ import annotations

import asyncio
import signal
import time

from aioworker.queue.broker import HUNG
from tests.helpers.burst import burst, fetch
from tests.helpers.master import make_dir, running_master, spawn
from tests.helpers.redis import RedisServer
from tests.helpers.wait import wait_until
from tests.queue.configs import queue_config, queue_group, web_group


async def _submit_and_leave(
    redis: RedisServer, address: tuple[str, int], raw: bytes, shows: tuple[str, ...]
) -> None:
    """Send a request, wait until Redis has its job (`shows` answers 1), then hang up."""
    _, writer = await asyncio.open_connection(*address)
    writer.write(raw)
    await writer.drain()
    while redis.command(*shows) != b":1\r\n":
        await asyncio.sleep(0.01)  # polling Redis for the submission, not a delay
    writer.close()


def test_redis_stopped_mid_run_queued_routes_503_at_once_fast_routes_fine(
    redis: RedisServer,
) -> None:
    config = queue_config(redis.url, web_group() + queue_group())
    with running_master(config) as master:
        address = master.url("web")
        assert asyncio.run(fetch(address, "/work?n=1&ms=1")).status == 200
        mark = master.mark()
        redis.stop()

        answers = asyncio.run(burst(address, ["/work?n=2&ms=1"]))  # the one that finds out
        answers += [asyncio.run(fetch(address, f"/work?n={i}&ms=1")) for i in range(20)]
        assert {a.status for a in answers} == {503}
        assert all(a.headers.get("retry-after") == "1" for a in answers)
        slowest = max(a.seconds for a in answers)
        assert slowest < 0.1, f"a queued route took {slowest:.3f}s to refuse"

        fast = [asyncio.run(fetch(address, "/fast")) for _ in range(20)]
        assert {(a.status, a.body) for a in fast} == {(200, b"fast")}
        master.wait_for(r"redis unreachable at redis://", since=mark)
        # Logged once per process, not per request.
        assert len(master.all_matches(r"redis unreachable", since=mark)) <= 3

        redis.start()
        wait_until(lambda: asyncio.run(fetch(address, "/work?n=3&ms=1")).status == 200, 20.0)
        answer = asyncio.run(fetch(address, "/work?n=4&ms=1"))
        assert (answer.status, answer.body.split()[:2]) == (200, [b"done", b"4"])


def test_a_hung_redis_counts_as_down_after_a_bounded_wait_then_comes_back(
    redis: RedisServer,
) -> None:
    """SIGSTOP: connections stay open and nothing answers. The request that finds out waits
    HUNG seconds at most, the next ones get 503 at once, and SIGCONT brings the queue back."""
    config = queue_config(redis.url, web_group() + queue_group())
    with running_master(config) as master:
        address = master.url("web")
        assert asyncio.run(fetch(address, "/work?n=1&ms=1")).status == 200
        assert redis.proc is not None
        redis.proc.send_signal(signal.SIGSTOP)
        try:
            first = asyncio.run(fetch(address, "/work?n=2&ms=1", timeout=30))
            assert first.status == 503
            assert first.seconds < HUNG + 2.0, f"the hung Redis took {first.seconds:.1f}s to notice"
            then = asyncio.run(fetch(address, "/work?n=3&ms=1"))
            assert (then.status, then.seconds < 0.1) == (503, True)
            assert asyncio.run(fetch(address, "/fast")).status == 200
        finally:
            redis.proc.send_signal(signal.SIGCONT)
        wait_until(lambda: asyncio.run(fetch(address, "/work?n=4&ms=1")).status == 200, 20.0)


def test_full_queue_503_and_what_was_accepted_runs_on_a_second_master(
    redis: RedisServer,
) -> None:
    """Web on one master (it only enqueues), the queue-fed group on another, one Redis."""
    web = queue_config(
        redis.url, web_group() + queue_group(queue_max=5, reply_timeout=0.5), consume=False
    )
    with running_master(web) as front:
        address = front.url("web")
        answers = asyncio.run(burst(address, [f"/work?n={i}&ms=1" for i in range(8)]))
        statuses = sorted(a.status for a in answers)
        assert statuses == [202] * 5 + [503] * 3, statuses
        assert all(a.headers["retry-after"] == "1" for a in answers if a.status == 503)
        assert all(b"queue is full" in a.body for a in answers if a.status == 503)
        locations = {i: a.headers["location"] for i, a in enumerate(answers) if a.status == 202}

        # Nothing runs them yet: the Location says pending.
        pending = asyncio.run(fetch(address, next(iter(locations.values()))))
        assert pending.status == 202

        directory = make_dir()
        (directory / "config.toml").write_text(queue_config(redis.url, queue_group()))
        back = spawn(["start", "-c", "config.toml"], directory)
        try:
            back.wait_for(r"started pid=")

            def all_done() -> bool:
                results = [asyncio.run(fetch(address, path)) for path in locations.values()]
                return all(r.status == 200 for r in results)

            wait_until(all_done, 20.0)
            for i, path in locations.items():
                result = asyncio.run(fetch(address, path))
                assert result.body.split()[:2] == [b"done", str(i).encode()]
            # And now a request is answered directly, on its own connection.
            direct = asyncio.run(fetch(address, "/work?n=99&ms=1"))
            assert (direct.status, direct.body.split()[:2]) == (200, [b"done", b"99"])
        finally:
            back.stop()


def test_an_idempotency_key_returns_the_same_job(redis: RedisServer) -> None:
    config = queue_config(redis.url, web_group() + queue_group())
    with running_master(config) as master:
        address = master.url("web")

        async def twice() -> list[str]:
            key = {"Idempotency-Key": "order-42"}
            first = await fetch(address, "/work?n=1&ms=1", headers=key)
            second = await fetch(address, "/work?n=2&ms=1", headers=key)
            other = await fetch(address, "/work?n=3&ms=1", headers={"Idempotency-Key": "x"})
            assert (first.status, second.status, other.status) == (200, 200, 200)
            assert first.body == second.body  # the first job's answer, n=1
            return [a.headers["x-job-id"] for a in (first, second, other)]

        first, second, other = asyncio.run(twice())
        assert first == second != other


def test_a_client_that_leaves_does_not_stop_its_job(redis: RedisServer) -> None:
    config = queue_config(redis.url, web_group() + queue_group(count=1))
    with running_master(config) as master:
        address = master.url("web")

        async def leave() -> str:
            began = time.monotonic()
            raw = b"GET /work?n=7&ms=300 HTTP/1.1\r\nHost: t\r\nIdempotency-Key: k7\r\n\r\n"
            await _submit_and_leave(redis, address, raw, ("EXISTS", "aioworker:idem:report:k7"))
            # The same key finds the same job, which ran to completion anyway.
            again = await fetch(address, "/work?n=8&ms=1", headers={"Idempotency-Key": "k7"})
            assert again.status == 200
            assert time.monotonic() - began < 5.0
            return again.body.decode()

        assert asyncio.run(leave()).split()[:2] == ["done", "7"]


def test_a_job_that_kills_every_worker_fails_for_good_after_max_attempts(
    redis: RedisServer,
) -> None:
    config = queue_config(
        redis.url, web_group() + queue_group(max_attempts=2, visibility_timeout=0.5)
    )
    with running_master(config) as master:
        address = master.url("web")
        answer = asyncio.run(fetch(address, "/crash"))
        assert (answer.status, answer.body) == (502, b"gave up after 2 attempts\n")
        assert redis.command("LLEN", "aioworker:dead:report") == b":1\r\n"
        master.wait_for(r"job \w+ gave up after 2 attempts \(dead-letter list\)")
        # The workers serve on.
        assert asyncio.run(fetch(address, "/work?n=1&ms=1")).status == 200


def test_a_body_over_queue_max_body_bytes_gets_413(redis: RedisServer) -> None:
    config = queue_config(redis.url, web_group() + queue_group(count=1))
    config = config.replace("consume = true\n", "consume = true\nmax_body_bytes = 1000\n")
    with running_master(config) as master:
        address = master.url("web")

        async def post(size: int) -> int:
            reader, writer = await asyncio.open_connection(*address)
            head = f"POST /work?n=1&ms=1 HTTP/1.1\r\nHost: t\r\nContent-Length: {size}\r\n"
            writer.write(head.encode() + b"Connection: close\r\n\r\n" + b"x" * size)
            status = int((await reader.readline()).split()[1])
            writer.close()
            return status

        assert asyncio.run(post(1000)) == 200
        assert asyncio.run(post(1001)) == 413


def test_cancel_on_disconnect_drops_a_job_nobody_started(redis: RedisServer) -> None:
    front_config = queue_config(redis.url, web_group() + queue_group(), consume=False)
    front_config = front_config.replace(
        "consume = false\n", "consume = false\ncancel_on_disconnect = true\n"
    )
    with running_master(front_config) as front:
        address = front.url("web")

        async def leave() -> None:
            raw = b"GET /work?n=1&ms=1 HTTP/1.1\r\nHost: t\r\n\r\n"
            await _submit_and_leave(redis, address, raw, ("XLEN", "aioworker:queue:report"))

        asyncio.run(leave())
        wait_until(lambda: redis.command("KEYS", "aioworker:cancel:*").startswith(b"*1\r\n"), 10)

        directory = make_dir()
        (directory / "config.toml").write_text(queue_config(redis.url, queue_group()))
        back = spawn(["start", "-c", "config.toml"], directory)
        try:
            back.wait_for(r"started pid=")
            wait_until(
                lambda: (
                    redis.command("HGET", "aioworker:stats:report", "cancelled") == b"$1\r\n1\r\n"
                ),
                10,
            )
            assert redis.command("HGET", "aioworker:stats:report", "completed") == b"$-1\r\n"
            assert redis.command("XLEN", "aioworker:queue:report") == b":0\r\n"
        finally:
            back.stop()


def test_queue_concurrency_runs_async_jobs_side_by_side(redis: RedisServer) -> None:
    config = queue_config(redis.url, web_group() + queue_group(count=1, queue_concurrency=4))
    with running_master(config) as master:
        began = time.monotonic()
        answers = asyncio.run(burst(master.url("web"), ["/nap?ms=400"] * 8))
        took = time.monotonic() - began
        assert {(a.status, a.body) for a in answers} == {(200, b"napped")}
        # One at a time this is 8 x 0.4 s = 3.2 s; four at a time, two rounds.
        assert took < 2.4, took


def test_retry_after_is_what_the_queue_table_says(redis: RedisServer) -> None:
    """Nobody consumes: the job outlives reply_timeout and the 202 says when to come back."""
    config = queue_config(redis.url, web_group() + queue_group(reply_timeout=0.2), consume=False)
    config = config.replace("consume = false\n", "consume = false\nretry_after = 7\n")
    with running_master(config) as master:
        answer = asyncio.run(fetch(master.url("web"), "/work?n=1&ms=1"))
        assert (answer.status, answer.headers["retry-after"]) == (202, "7"), answer
