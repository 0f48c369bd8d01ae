"""The engine's reply reader: one blocking XREAD for every job this process is waiting on.

A blocking read holds its Redis connection, so one read per waiting request would need a
connection per request (a burst of 400 needs 400). Instead each process has one reader task
that reads every watched reply stream plus its own wake stream in a single XREAD BLOCK, and
hands the entries to each job's queue. Watching a job happens before it is submitted, and the
submission writes to the wake stream in the same Lua call: the read in flight returns and the
next one includes the new job, reading its replies from the start, so nothing written before
the reader saw the job is missed. Redis down: every waiter is told (None) and the reader waits
for the broker to reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid

from aioworker.queue.broker import Broker, RedisDown, key

__all__ = ["Batch", "Replies"]

Batch = list[tuple[str, dict[bytes, bytes]]] | None  # None: Redis went down
_BLOCK = 5.0  # seconds one read may wait; a new job interrupts it through the wake stream


class Replies:
    """The reply streams this process waits on, read together."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.wake_key = f"aioworker:wake:{uuid.uuid4().hex}"
        self._after: dict[str, str] = {}  # job id -> last entry id handed over
        self._queues: dict[str, asyncio.Queue[Batch]] = {}
        self._wake_after = "0"
        self._kick = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def watch(self, job_id: str) -> asyncio.Queue[Batch]:
        """Start reading the job's replies (from its first entry); its queue of batches."""
        queue: asyncio.Queue[Batch] = asyncio.Queue()
        self._queues[job_id] = queue
        self._after[job_id] = "0"
        self._kick.set()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())
        return queue

    def unwatch(self, job_id: str) -> None:
        self._queues.pop(job_id, None)
        self._after.pop(job_id, None)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        prefix = key("reply", "")
        while True:
            if not self._queues:
                self._kick.clear()
                await self._kick.wait()
                continue
            streams = {self.wake_key: self._wake_after}
            streams.update({key("reply", job): after for job, after in self._after.items()})
            try:
                found = await self.broker.read_streams(streams, _BLOCK)
            except RedisDown:
                for waiting in self._queues.values():
                    waiting.put_nowait(None)
                await self.broker.reachable.wait()
                continue
            for name, entries in found:
                if not entries:
                    continue
                if name == self.wake_key:
                    self._wake_after = entries[-1][0]
                    continue
                job = name[len(prefix) :]
                queue = self._queues.get(job)
                if queue is not None:
                    self._after[job] = entries[-1][0]
                    queue.put_nowait(entries)
