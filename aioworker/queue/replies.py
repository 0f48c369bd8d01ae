"""The engine's reply reader: one blocking XREAD on this process's inbox for all its jobs.

A blocking read holds its Redis connection, and a read on many keys costs Redis and the
client in proportion to the keys (a first version read every waiting job's reply stream in one
XREAD; py-spy showed a third of a web worker's CPU re-sending those key lists during a burst
of 400). So each job names its submitting process's inbox stream (``aioworker:inbox:UUID``,
`reply_to`), the consumer writes every reply event there too, tagged with the job id, and one
reader task reads that single key and hands each job its events. The inbox is empty when the
process starts and is read from its first entry, so nothing written is missed.

A job this process did not submit (an Idempotency-Key retry that found an earlier job, a Location
asked for Server-Sent Events) has no events in this inbox: `follow` reads that job's own reply
stream from its first entry with a blocking XREAD of its own (one pooled connection each,
for the rare path). Redis down: every waiter is told (None).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import defaultdict, deque

from aioworker.queue.broker import Broker, RedisDown, key

__all__ = ["Batch", "HungUp", "Mailbox", "Replies"]

Batch = list[tuple[str, dict[bytes, bytes]]] | None  # None: Redis went down
_BLOCK = 5.0  # seconds one read may wait before it is sent again


class HungUp(Exception):
    """The client of the waiting request went away."""


class Mailbox:
    """One job's reply batches in arrival order, for the one request that waits on them.

    An asyncio.Queue and a wait_for per wait cost a Task each time (Python 3.11); this is a
    deque and one future, with a timer only while a deadline runs."""

    __slots__ = ("_batches", "_hung_up", "_waiter")

    def __init__(self) -> None:
        self._batches: deque[Batch] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._hung_up = False

    def put(self, batch: Batch) -> None:
        self._batches.append(batch)
        self._wake()

    def hang_up(self) -> None:
        """The client left: the waiting `get` raises HungUp."""
        self._hung_up = True
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self, timeout: float | None = None) -> Batch:
        """The next batch; TimeoutError when none came within `timeout` seconds."""
        if not self._batches and not self._hung_up:
            loop = asyncio.get_running_loop()
            waiter = self._waiter = loop.create_future()
            timer = None if timeout is None else loop.call_later(timeout, _expire, waiter)
            try:
                await waiter
            finally:
                self._waiter = None
                if timer is not None:
                    timer.cancel()
        if self._hung_up:
            raise HungUp
        if not self._batches:
            raise TimeoutError
        return self._batches.popleft()


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class Replies:
    """The replies this process waits on."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.inbox = f"aioworker:inbox:{uuid.uuid4().hex}"
        self._queues: dict[str, Mailbox] = {}
        self._followers: dict[str, asyncio.Task[None]] = {}
        self._after = "0"
        self._kick = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def watch(self, job_id: str) -> Mailbox:
        """Wait for the replies of a job submitted with this inbox; its mailbox."""
        queue = Mailbox()
        self._queues[job_id] = queue
        self._kick.set()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())
        return queue

    def follow(self, job_id: str) -> Mailbox:
        """Wait for the replies of any job, read from its own reply stream."""
        queue = Mailbox()
        self._queues[job_id] = queue
        loop = asyncio.get_running_loop()
        self._followers[job_id] = loop.create_task(self._follow(job_id, queue))
        return queue

    def unwatch(self, job_id: str) -> None:
        self._queues.pop(job_id, None)
        follower = self._followers.pop(job_id, None)
        if follower is not None:
            follower.cancel()

    async def close(self) -> None:
        tasks = [*self._followers.values(), *([self._task] if self._task else [])]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _follow(self, job_id: str, queue: Mailbox) -> None:
        after = "0"
        stream = key("reply", job_id)
        while True:
            try:
                found = await self.broker.read_streams({stream: after}, _BLOCK)
            except RedisDown:
                queue.put(None)
                await self.broker.reachable.wait()
                continue
            for _, entries in found:
                if entries:
                    after = entries[-1][0]
                    queue.put(entries)

    async def _run(self) -> None:
        while True:
            if not self._queues:
                self._kick.clear()
                await self._kick.wait()
                continue
            try:
                found = await self.broker.read_streams({self.inbox: self._after}, _BLOCK)
            except RedisDown:
                for job, waiting in self._queues.items():
                    if job not in self._followers:
                        waiting.put(None)
                await self.broker.reachable.wait()
                continue
            batches: dict[str, list[tuple[str, dict[bytes, bytes]]]] = defaultdict(list)
            for _, entries in found:
                for entry, fields in entries:
                    self._after = entry
                    job = fields.pop(b"j", b"").decode()
                    batches[job].append((entry, fields))
            for job, batch in batches.items():
                queue = self._queues.get(job)
                if queue is not None and job not in self._followers:
                    queue.put(batch)
