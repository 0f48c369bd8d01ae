"""Every Redis command the queues use, and whether Redis is reachable (the only redis import).

Keys (one Redis may hold several groups and several masters' traffic):

- ``aioworker:queue:GROUP``: the group's stream of jobs, read by the consumer group ``workers``;
  an entry is deleted once its job is acknowledged, so XLEN counts waiting and running jobs
  and `queue_max` bounds it without trimming anything accepted (no MAXLEN).
- ``aioworker:reply:JOB``: the job's reply events, read with blocking XREAD by the waiting
  engine and with XRANGE by the Location; it expires `result_ttl` after its last write.
- ``aioworker:job:JOB`` (the job exists, for the Location), ``aioworker:idem:GROUP:KEY``
  (an Idempotency-Key's job), ``aioworker:cancel:JOB`` (its client left),
  ``aioworker:attempts:GROUP`` (deliveries per job), ``aioworker:stats:GROUP`` (counters),
  ``aioworker:dead:GROUP`` (the dead-letter list).

Reachability is tracked, not probed per request: the first connection error marks Redis down
and starts one reconnect task (backoff 0.1 s doubling to 2 s, logged once each way); while it
is down `call` raises `RedisDown` at once, so a queued route answers 503 in microseconds
instead of waiting for a connect timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from aioworker.queue.jobs import Event, encode_event
from aioworker.queue.resp import Arg, Client, ReplyError

__all__ = ["CONSUMERS", "HUNG", "Broker", "Finished", "QueueFull", "RedisDown", "Submitted", "key"]

log = logging.getLogger("aioworker.queue")

CONSUMERS = "workers"  # the consumer group every queue-fed worker of a group joins
HUNG = 3.0  # seconds without an answer after which Redis counts as down
_INBOX_MAX = 100_000  # entries an inbox keeps (approximate trim): far more than are waited on
_T = TypeVar("_T")
_DOWN = (OSError,)  # ConnectionError included: the client's every transport failure


class RedisDown(Exception):
    """Redis is unreachable (now, or since an earlier error and not yet back)."""


class QueueFull(Exception):
    """The group's stream holds `queue_max` jobs."""


@dataclass(frozen=True, slots=True)
class Submitted:
    """An accepted job: its id, whether an earlier submission with its key made it, and its
    stream entry ('' when it is that earlier one)."""

    job_id: str
    again: bool
    entry: str = ""


@dataclass(frozen=True, slots=True)
class Finished:
    """A job its worker is done with: to acknowledge, delete and count as `outcome`."""

    group: str
    entry: str
    job_id: str
    outcome: str


def key(kind: str, name: str) -> str:
    """The Redis key of one kind (queue, reply, job, cancel, stats, attempts, dead, idem) and
    name (a group, a job id, GROUP:KEY)."""
    return f"aioworker:{kind}:{name}"


# Atomic: the idempotency lookup, the queue_max check and the XADD cannot interleave with
# another engine's submission. KEYS: stream, idempotency key ('' = none), job marker.
# ARGV: queue_max, idempotency ttl ms, result ttl ms, job id, head, body.
_SUBMIT = """
if KEYS[2] ~= '' then
  local found = redis.call('GET', KEYS[2])
  if found then return {'again', found} end
end
if redis.call('XLEN', KEYS[1]) >= tonumber(ARGV[1]) then return {'full', ''} end
local entry = redis.call('XADD', KEYS[1], '*', 'id', ARGV[4], 'head', ARGV[5], 'body', ARGV[6])
redis.call('SET', KEYS[3], '1', 'PX', ARGV[3])
if KEYS[2] ~= '' then redis.call('SET', KEYS[2], ARGV[4], 'PX', ARGV[2]) end
return {'new', ARGV[4], entry}
"""

# A waiting client left: mark the job cancelled, and if no worker has taken its entry yet
# (not in the consumer group's pending list), delete the entry and count it, so workers never
# see it and need no check per job. KEYS: stream, cancel marker, stats. ARGV: entry ('' =
# unknown), marker ttl ms. XPENDING fails (NOGROUP) before any worker joined: nobody took it.
_CANCEL = """
redis.call('SET', KEYS[2], '1', 'PX', ARGV[2])
if ARGV[1] == '' then return 0 end
local taken = redis.pcall('XPENDING', KEYS[1], 'workers', ARGV[1], ARGV[1], 1)
if type(taken) == 'table' and taken.err == nil and #taken > 0 then return 0 end
if redis.call('XDEL', KEYS[1], ARGV[1]) == 1 then
  redis.call('HINCRBY', KEYS[3], 'cancelled', 1)
  return 1
end
return 0
"""


_SUBMIT_SHA = hashlib.sha1(_SUBMIT.encode()).hexdigest()
_Pending = tuple[list[str], list[bytes | int | str], "asyncio.Future[Any]"]


def _noscript(result: Any) -> bool:
    return isinstance(result, ReplyError) and str(result).startswith("NOSCRIPT")


Entries = list[tuple[str, dict[bytes, bytes]]]


def _fields(flat: list[bytes] | None) -> dict[bytes, bytes]:
    """A stream entry's field list [f1, v1, f2, v2, ...] as a dict ({} for a deleted entry)."""
    if not flat:
        return {}
    return dict(zip(flat[0::2], flat[1::2], strict=True))


def _entries(raw: list[Any] | None) -> Entries:
    return [(entry.decode(), _fields(flat)) for entry, flat in raw or ()]


class Broker:
    """One Redis client per process, with its reachability tracked."""

    def __init__(self, url: str, *, result_ttl: float = 3600.0) -> None:
        # A command unanswered for HUNG seconds (past a blocking read's BLOCK) means a hung
        # Redis (stopped with SIGSTOP, swapping, a disk stall with appendfsync always).
        self.client = Client(url, timeout=HUNG, connect_timeout=1.0)
        self.url = url
        self.result_ttl_ms = int(result_ttl * 1000)
        self.up = True  # optimistic until the first error: the first request finds out
        self.reachable = asyncio.Event()  # set while `up`
        self.reachable.set()
        self._reconnecting: asyncio.Task[None] | None = None
        self._batch: list[_Pending] = []
        self._flusher: asyncio.Task[None] | None = None

    async def call(self, make: Callable[[], Awaitable[_T]]) -> _T:
        """Run one Redis operation; RedisDown at once while Redis is known to be down."""
        if not self.up:
            raise RedisDown(self.url)
        try:
            return await make()
        except _DOWN as exc:
            self._lost(exc)
            raise RedisDown(self.url) from exc

    def _lost(self, exc: BaseException) -> None:
        if not self.up:
            return
        self.up = False
        self.reachable.clear()
        log.warning("redis unreachable at %s: %s; retrying with backoff", self.url, exc)
        self.client.drop()  # blocking reads on a hung Redis included
        self._reconnecting = asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        delay = 0.1
        while True:
            await asyncio.sleep(delay)
            try:
                await asyncio.wait_for(self.client.execute("PING"), 1.0)
            except (*_DOWN, asyncio.TimeoutError):
                delay = min(delay * 2, 2.0)
                continue
            self.up = True
            self.reachable.set()
            log.warning("redis reachable again at %s", self.url)
            return

    async def close(self) -> None:
        if self._reconnecting is not None:
            self._reconnecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reconnecting
        await self.client.close()

    async def ping(self) -> bool:
        """Whether Redis answers now (RedisDown when it does not, or is known not to)."""
        return bool(await self.call(lambda: self.client.execute("PING")))

    # ---------------------------------------------------------------- the engine's side

    async def submit(
        self,
        group: str,
        fields: dict[bytes, bytes],
        *,
        queue_max: int,
        idempotency: str = "",
        idempotency_ttl: float = 86400.0,
    ) -> Submitted:
        """Put a job on the group's stream; QueueFull when it holds queue_max jobs."""
        job_id = fields[b"id"].decode()
        idem = key("idem", f"{group}:{idempotency}") if idempotency else ""
        args: list[bytes | int | str] = [
            queue_max,
            int(idempotency_ttl * 1000),
            self.result_ttl_ms,
            job_id,
            fields[b"head"],
            fields[b"body"],
        ]
        key_list = [key("queue", group), idem, key("job", job_id)]
        if not self.up:
            raise RedisDown(self.url)
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Any] = loop.create_future()
        self._batch.append((key_list, args, done))
        if self._flusher is None:
            self._flusher = loop.create_task(self._flush())
        kind, found, *entry = await done
        if kind == b"full":
            raise QueueFull(group)
        return Submitted(found.decode(), kind == b"again", entry[0].decode() if entry else "")

    async def _flush(self) -> None:
        """Send the waiting submissions in one pipeline, and again for those that came while it
        was in flight, until none wait: a burst of 400 requests costs a few round trips on one
        connection instead of a pipeline (and a pooled connection) per loop turn. One pipeline
        at a time also keeps the jobs of this process in their arrival order."""
        try:
            await asyncio.sleep(0)  # let the other requests of this turn join the batch
            while self._batch:
                batch, self._batch = self._batch, []
                await self._send(batch)
        finally:
            self._flusher = None

    async def _send(self, batch: list[_Pending]) -> None:
        try:
            results = await self.call(lambda: self._evalsha(batch))
            missing = [p for p, r in zip(batch, results, strict=True) if _noscript(r)]
            if missing:  # a Redis restarted (or SCRIPT FLUSH) since the script was loaded
                await self.call(lambda: self.client.execute("SCRIPT", "LOAD", _SUBMIT))
                again = iter(await self.call(lambda: self._evalsha(missing)))
                results = [next(again) if _noscript(r) else r for r in results]
        except RedisDown as exc:
            for _, _, done in batch:
                if not done.done():
                    done.set_exception(RedisDown(str(exc)))
            return
        for (_, _, done), result in zip(batch, results, strict=True):
            if done.done():
                continue
            if isinstance(result, Exception):
                done.set_exception(result)
            else:
                done.set_result(result)

    async def _evalsha(self, batch: list[_Pending]) -> list[Any]:
        # EVALSHA straight away, without a SCRIPT EXISTS round trip per batch: a NOSCRIPT
        # answer (Redis restarted, SCRIPT FLUSH) is rare and handled above.
        return await self.client.pipeline(
            [["EVALSHA", _SUBMIT_SHA, len(keys), *keys, *args] for keys, args, _ in batch]
        )

    async def read_streams(
        self, streams: dict[str, str], block: float
    ) -> list[tuple[str, Entries]]:
        """Entries of several streams after their given ids, waiting up to `block` seconds."""
        ms = max(1, int(block * 1000))
        args: list[Arg] = ["XREAD", "BLOCK", ms, "STREAMS", *streams, *streams.values()]
        found: Any = await self.call(lambda: self.client.blocking(*args, block=block))
        return [(name.decode(), _entries(entries)) for name, entries in found or ()]

    async def stored_reply(self, job_id: str) -> tuple[bool, Entries]:
        """Whether the job is known, and every reply entry stored so far."""
        known, entries = await self.call(
            lambda: self.client.pipeline(
                [["EXISTS", key("job", job_id)], ["XRANGE", key("reply", job_id), "-", "+"]]
            )
        )
        return bool(known), _entries(entries)

    async def cancel(self, group: str, job_id: str, entry: str) -> bool:
        """Cancel a job whose client left; whether it was dropped before any worker took it
        (a job taken by a worker after a redelivery finds the mark and is dropped then)."""
        keys = [key("queue", group), key("cancel", job_id), key("stats", group)]
        args: list[Arg] = ["EVAL", _CANCEL, len(keys), *keys, entry, self.result_ttl_ms]
        return bool(await self.call(lambda: self.client.execute(*args)))

    # ---------------------------------------------------------------- the consumer's side

    async def join(self, group: str) -> None:
        """Create the group's stream and consumer group (once; another worker may win)."""
        try:
            await self.call(
                lambda: self.client.execute(
                    "XGROUP", "CREATE", key("queue", group), CONSUMERS, "0", "MKSTREAM"
                )
            )
        except ReplyError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _rejoin(self, group: str, exc: ReplyError) -> None:
        # A Redis restarted without persistence (or a FLUSHALL) lost the consumer group.
        if "NOGROUP" not in str(exc):
            raise exc
        log.warning("group %s: the consumer group is gone from redis; creating it again", group)
        await self.join(group)

    async def pull(
        self, group: str, consumer: str, block: float, finished: Finished | None = None
    ) -> tuple[str, dict[bytes, bytes]] | None:
        """The next new job for this consumer, waiting up to `block` seconds; the `finished`
        job before it is acknowledged in the same round trip."""
        args: list[Arg] = ["XREADGROUP", "GROUP", CONSUMERS, consumer, "COUNT", 1]
        args += ["BLOCK", max(1, int(block * 1000)), "STREAMS", key("queue", group), ">"]
        before = self._finish_commands(finished) if finished else []
        try:
            found: Any = await self.call(
                lambda: self.client.blocking(*args, block=block, before=before)
            )
        except ReplyError as exc:
            await self._rejoin(group, exc)
            return None
        if not found or not found[0][1]:
            return None
        entry, flat = found[0][1][0]
        return entry.decode(), _fields(flat)

    async def claim(
        self, group: str, consumer: str, idle: float
    ) -> tuple[str, dict[bytes, bytes]] | None:
        """A job another consumer has held silently for `idle` seconds (XAUTOCLAIM), if any."""
        stream = key("queue", group)
        try:
            result: Any = await self.call(
                lambda: self.client.execute(
                    "XAUTOCLAIM", stream, CONSUMERS, consumer, int(idle * 1000), "0-0", "COUNT", 1
                )
            )
        except ReplyError as exc:
            await self._rejoin(group, exc)
            return None
        for entry, flat in result[1]:
            if flat:  # an entry deleted while pending comes back empty (Redis 6.2)
                return entry.decode(), _fields(flat)
        return None

    async def touch(self, group: str, consumer: str, entry: str) -> None:
        """Reset a running job's idle time so it is not claimed while its worker is alive."""
        await self.call(
            lambda: self.client.execute(
                "XCLAIM", key("queue", group), CONSUMERS, consumer, 0, entry, "JUSTID"
            )
        )

    async def redelivered(self, group: str, job_id: str) -> tuple[int, bool]:
        """Count a redelivery of the job (a claim); return the attempt number and whether its
        client cancelled it. A first delivery needs neither: it is attempt 1, and a job
        cancelled before any worker took it was deleted from the stream (`cancel`)."""
        attempt, cancelled = await self.call(
            lambda: self.client.pipeline(
                [["HINCRBY", key("attempts", group), job_id, 1], ["EXISTS", key("cancel", job_id)]]
            )
        )
        return int(attempt) + 1, bool(cancelled)

    async def reply(self, job_id: str, *events: Event, inbox: str = "") -> None:
        """Append reply events in one round trip: to the job's reply stream (kept result_ttl
        after its last write, for the Location) and, tagged with the job id, to the inbox of
        the process waiting for it."""
        stream = key("reply", job_id)
        commands: list[list[Any]] = []
        for event in events:
            flat = [x for pair in encode_event(event).items() for x in pair]
            commands.append(["XADD", stream, "*", *flat])
            if inbox:
                commands.append(
                    ["XADD", inbox, "MAXLEN", "~", _INBOX_MAX, "*", *flat, b"j", job_id]
                )
        commands.append(["PEXPIRE", stream, self.result_ttl_ms])
        if inbox:
            commands.append(["PEXPIRE", inbox, self.result_ttl_ms])
        await self._checked(commands)

    async def finish(self, group: str, entry: str, job_id: str, outcome: str) -> None:
        """Acknowledge and delete the job's entry and count it (completed, failed...)."""
        await self.acknowledge(Finished(group, entry, job_id, outcome))

    async def acknowledge(self, job: Finished) -> None:
        await self._checked(self._finish_commands(job))

    def _finish_commands(self, job: Finished) -> list[list[Arg]]:
        stream = key("queue", job.group)
        commands: list[list[Arg]] = [
            ["XACK", stream, CONSUMERS, job.entry],
            ["XDEL", stream, job.entry],
            ["HDEL", key("attempts", job.group), job.job_id],
        ]
        if job.outcome:
            commands.append(["HINCRBY", key("stats", job.group), job.outcome, 1])
        return commands

    async def _checked(self, commands: list[list[Arg]]) -> None:
        for result in await self.call(lambda: self.client.pipeline(commands)):
            if isinstance(result, ReplyError):
                raise result

    async def count(self, group: str, counter: str) -> None:
        await self.call(lambda: self.client.execute("HINCRBY", key("stats", group), counter, 1))

    async def bury(self, group: str, job_id: str, reason: str) -> None:
        """Put a job that failed for good on the group's dead-letter list."""
        record = f"{job_id} {time.time():.3f} {reason}"
        await self.call(lambda: self.client.execute("LPUSH", key("dead", group), record))
