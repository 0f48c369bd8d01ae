"""The queue-fed worker: pull a job when free, run the ASGI app on it, write the reply back.

Each of the worker's `queue_concurrency` runners takes one job at a time: first any job a
silent worker has held for `visibility_timeout` (XAUTOCLAIM: the worker died mid-job), else
the next new one (XREADGROUP, blocking up to a second so a stop is noticed). While the app
runs, the runner refreshes the job's idle time every third of `visibility_timeout`, so a slow
job of a live worker is never claimed by another. Delivery is at-least-once: the entry is
acknowledged (XACK, then XDEL) only after the reply's last event is written, so a worker killed
mid-job leaves it to be claimed; the new attempt first writes `Reset`, which voids what the
dead attempt wrote. After `max_attempts` deliveries the job fails for good: dead-letter list,
`Failed(502)` to whoever waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from dataclasses import dataclass, field

from aioworker._types import ASGIApp, Message
from aioworker.config import GroupSettings
from aioworker.http.counters import ServerState
from aioworker.queue.broker import Broker, Finished, RedisDown
from aioworker.queue.jobs import (
    Chunk,
    End,
    Event,
    Failed,
    Job,
    JobError,
    Reset,
    Start,
    decode_job,
)
from aioworker.queue.jobs import scope_of as job_scope

__all__ = ["Consumer"]

log = logging.getLogger("aioworker.queue")


@dataclass(eq=False)
class _Running:
    """A job in progress, as the scoreboard shows requests (status names the oldest one)."""

    method: str
    path: str
    started: float = field(default_factory=time.monotonic)


class Consumer:
    """One queue-fed worker's runners.

    Its `state` counts jobs as the engine counts requests (in progress, answered by status
    class, latency), so the observability hook copies them into the worker's scoreboard slot:
    `status` shows a queue-fed worker's jobs, and the job a blocked worker is running.
    """

    def __init__(self, app: ASGIApp, group: GroupSettings, broker: Broker) -> None:
        self.app = app
        self.group = group
        self.broker = broker
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.state = ServerState()
        self._stopping = asyncio.Event()
        self._claim_every = min(1.0, group.visibility_timeout / 4)

    def stop(self) -> None:
        """Take no new job; the runners finish the ones they hold."""
        self._stopping.set()

    async def run(self) -> None:
        """Run the runners until stop() and the jobs in progress are finished."""
        await asyncio.gather(*(self._runner() for _ in range(self.group.queue_concurrency)))

    async def _runner(self) -> None:
        joined = False  # pull() and claim() join again when Redis lost the group
        last_claim = 0.0
        loop = asyncio.get_running_loop()
        # The job just done is acknowledged with the next pull, in one round trip.
        finished: Finished | None = None
        while not self._stopping.is_set():
            try:
                if not joined:
                    await self.broker.join(self.group.name)
                    joined = True
                entry = None
                claimed = False
                now = loop.time()
                if now - last_claim >= self._claim_every:
                    last_claim = now
                    if finished is not None:
                        await self.broker.acknowledge(finished)
                        finished = None
                    entry = await self.broker.claim(
                        self.group.name, self.name, self.group.visibility_timeout
                    )
                    if entry is not None:
                        claimed = True
                        await self.broker.count(self.group.name, "redelivered")
                if entry is None:
                    pulling, finished = finished, None
                    entry = await self.broker.pull(
                        self.group.name, self.name, self._claim_every, pulling
                    )
            except RedisDown:
                # An acknowledgement lost with it leaves the job pending: it is claimed
                # and run again after visibility_timeout (at least once).
                await self._wait_for_redis()
                continue
            if entry is not None:
                finished = await self._handle(*entry, claimed=claimed)
        if finished is not None:
            with contextlib.suppress(RedisDown):
                await self.broker.acknowledge(finished)

    async def _wait_for_redis(self) -> None:
        reachable = asyncio.ensure_future(self.broker.reachable.wait())
        stopping = asyncio.ensure_future(self._stopping.wait())
        await asyncio.wait({reachable, stopping}, return_when=asyncio.FIRST_COMPLETED)
        reachable.cancel()
        stopping.cancel()

    async def _handle(
        self, entry: str, fields: dict[bytes, bytes], *, claimed: bool
    ) -> Finished | None:
        """Run one job; a job the app answered is returned for the caller to acknowledge
        (with its next pull), the others are acknowledged here."""
        group = self.group.name
        try:
            job = decode_job(fields)
        except JobError as exc:
            log.error("group %s: dropping stream entry %s: %s", group, entry, exc)
            with contextlib.suppress(RedisDown):
                await self.broker.finish(group, entry, "", "failed")
            return None
        try:
            # A first delivery is attempt 1 and was not cancelled (a cancelled job nobody took is
            # deleted from the stream): one round trip less per job.
            attempt, cancelled = 1, False
            if claimed:
                attempt, cancelled = await self.broker.redelivered(group, job.id)
            if cancelled:
                await self.broker.finish(group, entry, job.id, "cancelled")
                return None
            if attempt > self.group.max_attempts:
                reason = f"gave up after {attempt - 1} attempts"
                log.error("group %s: job %s %s (dead-letter list)", group, job.id, reason)
                await self.broker.bury(group, job.id, reason)
                await self.broker.reply(job.id, Failed(502, reason), inbox=job.reply_to)
                await self.broker.finish(group, entry, job.id, "failed")
                return None
            if attempt > 1:
                await self.broker.reply(job.id, Reset(attempt), inbox=job.reply_to)
            outcome = await self._run_app(job, entry)
        except RedisDown:
            # The job stays pending; it is claimed again once Redis is back.
            log.debug("group %s: job %s interrupted: redis down", group, job.id)
            return None
        return Finished(group, entry, job.id, outcome)

    @property
    def running(self) -> int:
        return self.state.in_progress

    async def _run_app(self, job: Job, entry: str) -> str:
        """Run the app on the job, writing each event as it is sent; return the outcome."""
        running = _Running(job.method, job.path)
        self.state.request_started(running)
        status: list[int] = []
        try:
            outcome = await self._answer(job, entry, status)
        finally:
            elapsed = time.monotonic() - running.started
            self.state.request_ended(running, status[0] if status else None, elapsed)
        return outcome

    async def _answer(self, job: Job, entry: str, status: list[int]) -> str:
        """Run the app on the job and write its reply; `status` receives the status sent."""
        broker = self.broker
        state = {"started": False, "ended": False}
        sent_body = False
        finished = asyncio.Event()
        held: list[Event] = []

        async def receive() -> Message:
            nonlocal sent_body
            if not sent_body:
                sent_body = True
                return {"type": "http.request", "body": job.body, "more_body": False}
            await finished.wait()
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            # The start is held until the first body message, so a plain response (start, one
            # body) is one round trip and one entry batch for the waiting engine.
            kind = message["type"]
            if kind == "http.response.start" and not state["started"]:
                state["started"] = True
                headers = tuple((bytes(k), bytes(v)) for k, v in message.get("headers", ()))
                held.append(Start(int(message["status"]), headers))
                status.append(int(message["status"]))
            elif kind == "http.response.body" and state["started"] and not state["ended"]:
                events: list[Event] = [*held]
                held.clear()
                body = bytes(message.get("body", b""))
                if body:
                    events.append(Chunk(body))
                if not message.get("more_body", False):
                    state["ended"] = True
                    events.append(End())
                    finished.set()
                if events:
                    await broker.reply(job.id, *events, inbox=job.reply_to)

        toucher = asyncio.get_running_loop().create_task(self._keep(entry))
        try:
            await self.app(job_scope(job), receive, send)
        except RedisDown:
            raise
        except Exception:
            log.exception("group %s: the app failed on job %s", self.group.name, job.id)
            if not state["started"]:
                status.append(500)
                await broker.reply(
                    job.id, Failed(500, "the app raised an exception"), inbox=job.reply_to
                )
                return "failed"
        finally:
            finished.set()
            toucher.cancel()
        if not state["started"]:
            status.append(500)
            await broker.reply(
                job.id, Failed(500, "the app returned without a response"), inbox=job.reply_to
            )
            return "failed"
        if not state["ended"]:
            await broker.reply(job.id, *held, End(), inbox=job.reply_to)
        return "completed"

    async def _keep(self, entry: str) -> None:
        """Refresh the job's idle time while it runs (a live worker keeps its job)."""
        every = self.group.visibility_timeout / 3
        while True:
            await asyncio.sleep(every)
            with contextlib.suppress(RedisDown):
                await self.broker.touch(self.group.name, self.name, entry)
