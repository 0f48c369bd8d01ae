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
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from aioworker.queue.jobs import Event, encode_event

__all__ = ["CONSUMERS", "Broker", "QueueFull", "RedisDown", "Submitted", "key"]

log = logging.getLogger("aioworker.queue")

CONSUMERS = "workers"  # the consumer group every queue-fed worker of a group joins
_INBOX_MAX = 100_000  # entries an inbox keeps (approximate trim): far more than are waited on
_T = TypeVar("_T")
_DOWN = (RedisConnectionError, RedisTimeoutError, ConnectionError, OSError)


class RedisDown(Exception):
    """Redis is unreachable (now, or since an earlier error and not yet back)."""


class QueueFull(Exception):
    """The group's stream holds `queue_max` jobs."""


@dataclass(frozen=True, slots=True)
class Submitted:
    """An accepted job: its id, and whether an earlier submission with its key made it."""

    job_id: str
    again: bool


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
redis.call('XADD', KEYS[1], '*', 'id', ARGV[4], 'head', ARGV[5], 'body', ARGV[6])
redis.call('SET', KEYS[3], '1', 'PX', ARGV[3])
if KEYS[2] ~= '' then redis.call('SET', KEYS[2], ARGV[4], 'PX', ARGV[2]) end
return {'new', ARGV[4]}
"""


class Broker:
    """One Redis client per process, with its reachability tracked."""

    def __init__(self, url: str, *, result_ttl: float = 3600.0) -> None:
        # No retries inside redis-py: a failure must surface now and flip the state, and the
        # reconnect task does the retrying.
        # A blocking pool of 64: a burst of 400 submissions waits for a connection instead
        # of opening 400 (redis-py's plain pool refuses past its limit: "Too many connections").
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=64,
            timeout=None,
            # Blocking reads wait at most 5 s (their BLOCK), so 10 s means a hung Redis.
            socket_timeout=10.0,
            socket_connect_timeout=1.0,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
        )
        self.redis = aioredis.Redis(connection_pool=pool)
        self.url = url
        self.result_ttl_ms = int(result_ttl * 1000)
        self.up = True  # optimistic until the first error: the first request finds out
        self.reachable = asyncio.Event()  # set while `up`
        self.reachable.set()
        self._reconnecting: asyncio.Task[None] | None = None
        self._submit = self.redis.register_script(_SUBMIT)
        self._batch: list[tuple[list[str], list[bytes | int | str], asyncio.Future[Any]]] = []
        self._flushing: set[asyncio.Task[None]] = set()

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
        self._reconnecting = asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        delay = 0.1
        while True:
            await asyncio.sleep(delay)
            try:
                await asyncio.wait_for(self.redis.ping(), 1.0)
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
        await self.redis.aclose()
        await self.redis.connection_pool.disconnect(inuse_connections=True)

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
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._batch.append((key_list, args, done))
        if len(self._batch) == 1:
            self._flushing.add(asyncio.get_running_loop().create_task(self._flush()))
        kind, found = await done
        if kind == b"full":
            raise QueueFull(group)
        return Submitted(found.decode(), kind == b"again")

    async def _flush(self) -> None:
        """Send every submission made in this loop turn in one pipeline: a burst of requests
        costs one write and one read instead of one round trip (and pool checkout) each."""
        await asyncio.sleep(0)  # let the other requests of this turn join the batch
        batch, self._batch = self._batch, []
        try:

            async def send() -> list[Any]:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for key_list, args, _ in batch:
                        await self._submit(keys=key_list, args=args, client=pipe)
                    results: list[Any] = await pipe.execute(raise_on_error=False)
                    return results

            results = await self.call(send)
        except RedisDown as exc:
            for _, _, done in batch:
                if not done.done():
                    done.set_exception(RedisDown(str(exc)))
            return
        finally:
            task = asyncio.current_task()
            if task is not None:
                self._flushing.discard(task)
        for (_, _, done), result in zip(batch, results, strict=True):
            if done.done():
                continue
            if isinstance(result, Exception):
                done.set_exception(result)
            else:
                done.set_result(result)

    async def read_streams(
        self, streams: dict[str, str], block: float
    ) -> list[tuple[str, list[tuple[str, dict[bytes, bytes]]]]]:
        """Entries of several streams after their given ids, waiting up to `block` seconds."""
        ms = max(1, int(block * 1000))
        found: Any = await self.call(lambda: self.redis.xread(streams, block=ms))  # type: ignore[arg-type]
        return [
            (key.decode(), [(entry.decode(), fields) for entry, fields in entries])
            for key, entries in found or ()
        ]

    async def stored_reply(self, job_id: str) -> tuple[bool, list[tuple[str, dict[bytes, bytes]]]]:
        """Whether the job is known, and every reply entry stored so far."""

        async def both() -> tuple[Any, Any]:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.exists(key("job", job_id))
                pipe.xrange(key("reply", job_id))
                known, entries = await pipe.execute()
                return known, entries

        known, entries = await self.call(both)
        return bool(known), [(entry.decode(), fields) for entry, fields in entries]

    async def cancel(self, job_id: str) -> None:
        await self.call(lambda: self.redis.set(key("cancel", job_id), b"1", px=self.result_ttl_ms))

    # ---------------------------------------------------------------- the consumer's side

    async def join(self, group: str) -> None:
        """Create the group's stream and consumer group (once; another worker may win)."""
        try:
            await self.call(
                lambda: self.redis.xgroup_create(key("queue", group), CONSUMERS, "0", mkstream=True)
            )
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _rejoin(self, group: str, exc: ResponseError) -> None:
        # A Redis restarted without persistence (or a FLUSHALL) lost the consumer group.
        if "NOGROUP" not in str(exc):
            raise exc
        log.warning("group %s: the consumer group is gone from redis; creating it again", group)
        await self.join(group)

    async def pull(
        self, group: str, consumer: str, block: float
    ) -> tuple[str, dict[bytes, bytes]] | None:
        """The next new job for this consumer, waiting up to `block` seconds."""
        stream = key("queue", group)
        try:
            found: Any = await self.call(
                lambda: self.redis.xreadgroup(
                    CONSUMERS, consumer, {stream: ">"}, count=1, block=max(1, int(block * 1000))
                )
            )
        except ResponseError as exc:
            await self._rejoin(group, exc)
            return None
        if not found or not found[0][1]:
            return None
        entry, fields = found[0][1][0]
        return entry.decode(), fields

    async def claim(
        self, group: str, consumer: str, idle: float
    ) -> tuple[str, dict[bytes, bytes]] | None:
        """A job another consumer has held silently for `idle` seconds (XAUTOCLAIM), if any."""
        stream = key("queue", group)
        try:
            result: Any = await self.call(
                lambda: self.redis.xautoclaim(
                    stream, CONSUMERS, consumer, int(idle * 1000), count=1
                )
            )
        except ResponseError as exc:
            await self._rejoin(group, exc)
            return None
        for entry, fields in result[1]:
            if fields:  # an entry deleted while pending comes back empty
                return entry.decode(), fields
        return None

    async def touch(self, group: str, consumer: str, entry: str) -> None:
        """Reset a running job's idle time so it is not claimed while its worker is alive."""
        await self.call(
            lambda: self.redis.xclaim(
                key("queue", group), CONSUMERS, consumer, 0, [entry], justid=True
            )
        )

    async def start_attempt(self, group: str, job_id: str) -> tuple[int, bool]:
        """Count a delivery of the job; return the attempt number and whether it was cancelled."""

        async def both() -> tuple[Any, Any]:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.hincrby(key("attempts", group), job_id, 1)
                pipe.exists(key("cancel", job_id))
                attempt, cancelled = await pipe.execute()
                return attempt, cancelled

        attempt, cancelled = await self.call(both)
        return int(attempt), bool(cancelled)

    async def reply(self, job_id: str, *events: Event, inbox: str = "") -> None:
        """Append reply events in one round trip: to the job's reply stream (kept result_ttl
        after its last write, for the Location) and, tagged with the job id, to the inbox of
        the process waiting for it."""

        async def write() -> None:
            async with self.redis.pipeline(transaction=False) as pipe:
                for event in events:
                    fields = encode_event(event)
                    pipe.xadd(key("reply", job_id), fields)  # type: ignore[arg-type]
                    if inbox:
                        tagged = {**fields, b"j": job_id.encode()}
                        pipe.xadd(inbox, tagged, maxlen=_INBOX_MAX, approximate=True)  # type: ignore[arg-type]
                pipe.pexpire(key("reply", job_id), self.result_ttl_ms)
                if inbox:
                    pipe.pexpire(inbox, self.result_ttl_ms)
                await pipe.execute()

        await self.call(write)

    async def finish(self, group: str, entry: str, job_id: str, outcome: str) -> None:
        """Acknowledge and delete the job's entry and count it (completed, failed...)."""

        async def write() -> None:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.xack(key("queue", group), CONSUMERS, entry)
                pipe.xdel(key("queue", group), entry)
                pipe.hdel(key("attempts", group), job_id)
                if outcome:
                    pipe.hincrby(key("stats", group), outcome, 1)
                await pipe.execute()

        await self.call(write)

    async def count(self, group: str, counter: str) -> None:
        await self.call(lambda: self.redis.hincrby(key("stats", group), counter, 1))

    async def bury(self, group: str, job_id: str, reason: str) -> None:
        """Put a job that failed for good on the group's dead-letter list."""
        record = f"{job_id} {time.time():.3f} {reason}"
        await self.call(lambda: self.redis.lpush(key("dead", group), record))
