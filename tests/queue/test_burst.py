"""A burst on a queue-fed group: every request answered by a free worker, even past a kill -9."""

from __future__ import annotations

import asyncio
import os
import signal
import socket

from aioworker.supervisor.control import request
from tests.helpers.burst import Answer, burst, fetch
from tests.helpers.master import running_master
from tests.helpers.redis import RedisServer
from tests.helpers.wait import wait_until
from tests.queue.configs import queue_config, queue_group, web_group

BURST = 400


def _check(answers: list[Answer]) -> set[str]:
    """Every answer is 200 with the handler's body for its own request; the pids that ran them."""
    wrong = [(i, a.status, a.body[:80]) for i, a in enumerate(answers) if a.status != 200]
    assert not wrong, f"{len(wrong)} of {len(answers)} failed, first: {wrong[:5]}"
    pids = set()
    for i, answer in enumerate(answers):
        word, n, pid = answer.body.decode().split()
        assert (word, n) == ("done", str(i))
        pids.add(pid)
    return pids


def test_burst_of_400_on_two_workers_all_answered(redis: RedisServer) -> None:
    config = queue_config(redis.url, web_group() + queue_group())
    with running_master(config) as master:
        address = master.url("web")
        paths = [f"/work?n={i}&ms=50" for i in range(BURST)]
        answers = asyncio.run(burst(address, paths))
        pids = _check(answers)
        assert len(pids) == 2, "both queue-fed workers pulled jobs"
        # A job is counted when it is acknowledged, which rides on its worker's next pull: the
        # answer can reach the client a moment before the count reaches Redis.
        wait_until(
            lambda: (
                redis.command("HGET", "aioworker:stats:report", "completed") == b"$3\r\n400\r\n"
            ),
            what="the 400 jobs counted as completed",
        )


def _holding(redis: RedisServer, pid: int) -> int:
    """Jobs the consumer of worker `pid` holds unacknowledged (XPENDING per consumer)."""
    reply = redis.command(
        "XPENDING",
        "aioworker:queue:report",
        "workers",
        "-",
        "+",
        "10",
        f"{socket.gethostname()}:{pid}",
    )
    return reply.count(b"*4\r\n")


def test_kill_9_of_a_queue_worker_mid_burst_loses_nothing(redis: RedisServer) -> None:
    config = queue_config(redis.url, web_group() + queue_group())
    with running_master(config) as master:
        address = master.url("web")
        victim = master.ready_pids("report")[0]

        async def scenario() -> list[Answer]:
            tasks = [
                asyncio.ensure_future(fetch(address, f"/work?n={i}&ms=50")) for i in range(BURST)
            ]
            done = 0
            while done < 40:  # let the burst get going: 40 answered
                await asyncio.wait(
                    [t for t in tasks if not t.done()], return_when=asyncio.FIRST_COMPLETED
                )
                done = sum(t.done() for t in tasks)
            # Stop the victim, kill it only once it provably holds a job mid-run.
            while True:
                os.kill(victim, signal.SIGSTOP)
                if _holding(redis, victim):
                    os.kill(victim, signal.SIGKILL)
                    break
                os.kill(victim, signal.SIGCONT)
                await asyncio.sleep(0.005)  # let it take its next job
            return list(await asyncio.gather(*tasks))

        answers = asyncio.run(scenario())
        _check(answers)
        master.wait_for(rf"pid={victim}\b.*(killed|signal)")
        redelivered = redis.command("HGET", "aioworker:stats:report", "redelivered")
        assert redelivered.split(b"\r\n")[1] not in (b"", b"0"), redelivered


def test_a_front_group_relays_the_burst_and_the_default_group_stays_idle(
    redis: RedisServer,
) -> None:
    """A listening group whose routes are the queue-fed group's takes the burst (nginx sends
    those paths to it); the default group's workers see none of it."""
    front = web_group().replace("[groups.web]", "[groups.front]")
    front += 'routes = ["/work"]\n'
    config = queue_config(redis.url, web_group() + front + queue_group())
    with running_master(config) as master:
        paths = [f"/work?n={i}&ms=1" for i in range(100)]
        answers = asyncio.run(burst(master.url("front"), paths))
        _check(answers)
        assert all("x-job-id" in a.headers for a in answers), "answered through the queue"

        def served() -> dict[str, int]:
            doc = request(master.directory / "aioworker.sock", "status")
            return {g["name"]: g["requests"] for g in doc["groups"]}

        wait_until(lambda: served()["front"] == 100, 10.0)
        assert served()["web"] == 0
