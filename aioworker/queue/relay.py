"""The default group's side: queued routes go to Redis, their answers come back to the client.

`QueueRelay` wraps the default group's app (the engine is unchanged: to it the relay is the
app). A request whose path is in a queue-fed group's `routes` never reaches the app: its body
is read (up to [queue] max_body_bytes, else 413), the job is added to the group's stream, and
the reply events are relayed as they arrive, so a streaming answer streams. Past
`reply_timeout` with no answer begun, the client gets 202 and a Location
(``/_aioworker/jobs/GROUP/JOB``) where `GET` returns the stored answer (200 with the app's status
and body) or 202 while pending, and where ``Accept: text/event-stream`` waits for it and pushes
it as Server-Sent Events. Redis down or the queue full: 503 with Retry-After, at once.

A client that disconnects before its answer does not stop the job (it runs, and its result
is stored at the Location) unless [queue] cancel_on_disconnect is set, which drops it if no
worker has started it yet.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from aioworker._types import ASGIApp, Message, Receive, Scope, Send
from aioworker.config import GroupSettings, QueueSettings
from aioworker.frontdoor.routes import matcher
from aioworker.queue.broker import Broker, QueueFull, RedisDown
from aioworker.queue.jobs import (
    Chunk,
    End,
    Event,
    Failed,
    JobError,
    Reply,
    Reset,
    Start,
    decode_event,
    encode_job,
    job_from_scope,
)
from aioworker.queue.replies import HungUp, Mailbox, Replies

__all__ = ["JOBS", "QueueRelay", "queued_app"]

log = logging.getLogger("aioworker.queue")

JOBS = "/_aioworker/jobs/"  # the Locations of queued jobs: JOBS + GROUP/JOB
_IDEMPOTENCY = b"idempotency-key"
_SSE_KEEPALIVE = 15.0  # seconds between comment lines on an idle event stream (proxies)
_KEEPALIVE: Message = {"type": "http.response.body", "body": b": waiting\n\n", "more_body": True}


class _Aborted(Exception):
    """The answer had begun when a new attempt voided it: the connection must be cut."""


@dataclass(frozen=True, slots=True)
class _Target:
    group: GroupSettings
    inside: Callable[[str], bool]


def _plain(status: int, text: str, extra: Sequence[tuple[bytes, bytes]] = ()) -> list[Message]:
    body = text.encode()
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        *extra,
    ]
    return [
        {"type": "http.response.start", "status": status, "headers": headers},
        {"type": "http.response.body", "body": body},
    ]


class QueueRelay:
    """An ASGI app: queued routes through Redis, every other request to `app`."""

    def __init__(
        self, app: ASGIApp, groups: Sequence[GroupSettings], settings: QueueSettings
    ) -> None:
        self.app = app
        self.settings = settings
        self.targets: list[_Target] = []
        self.by_name: dict[str, GroupSettings] = {}
        for group in groups:
            inside = matcher(group.routes)
            if inside is not None:
                self.targets.append(_Target(group, inside))
                self.by_name[group.name] = group
        self._broker: Broker | None = None
        self._replies: Replies | None = None
        self._retry = [(b"retry-after", str(settings.retry_after).encode())]

    @property
    def broker(self) -> Broker:
        # Made on first use: the client belongs to the worker's running loop.
        if self._broker is None:
            self._broker = Broker(self.settings.url, result_ttl=self.settings.result_ttl)
        return self._broker

    @property
    def replies(self) -> Replies:
        if self._replies is None:
            self._replies = Replies(self.broker)
        return self._replies

    async def close(self) -> None:
        if self._replies is not None:
            await self._replies.close()
        if self._broker is not None:
            await self._broker.close()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if path.startswith(JOBS):
                await self._location(scope, send, path[len(JOBS) :])
                return
            for target in self.targets:
                if target.inside(path):
                    await self._submit(target.group, scope, receive, send)
                    return
        await self.app(scope, receive, send)

    async def _answer(self, send: Send, messages: list[Message]) -> None:
        for message in messages:
            await send(message)

    async def _unavailable(self, send: Send, why: str) -> None:
        await self._answer(send, _plain(503, why + "\n", self._retry))

    # ---------------------------------------------------------------- submit and relay

    async def _submit(
        self, group: GroupSettings, scope: Scope, receive: Receive, send: Send
    ) -> None:
        broker = self.broker
        if not broker.up:
            await self._unavailable(send, "Service Unavailable: the queue is unreachable")
            return
        body = await self._read_body(receive)
        if body is None:
            await self._answer(send, _plain(413, "Content Too Large\n"))
            return
        idempotency = ""
        for name, value in scope.get("headers", ()):
            if bytes(name).lower() == _IDEMPOTENCY:
                idempotency = bytes(value).decode("latin-1")[:200]
        replies = self.replies
        job = job_from_scope(scope, body, uuid.uuid4().hex, replies.inbox)
        job_id = job.id
        mailbox = replies.watch(job_id)  # before the job exists: no reply can be missed
        try:
            submitted = await broker.submit(
                group.name,
                encode_job(job),
                queue_max=group.queue_max,
                idempotency=idempotency,
                idempotency_ttl=self.settings.idempotency_ttl,
            )
            if submitted.job_id != job_id:  # an earlier submission with this Idempotency-Key
                replies.unwatch(job_id)
                job_id = submitted.job_id
                mailbox = replies.follow(job_id)
        except RedisDown:
            replies.unwatch(job_id)
            await self._unavailable(send, "Service Unavailable: the queue is unreachable")
            return
        except QueueFull:
            replies.unwatch(job_id)
            await self._unavailable(send, "Service Unavailable: the queue is full")
            return
        location = f"{JOBS}{group.name}/{job_id}"
        # The answer is relayed in this task; one more task listens for the client leaving.
        gone = asyncio.ensure_future(self._disconnected(receive, mailbox))
        try:
            await self._relay(job_id, location, group, mailbox, send)
        except HungUp:
            if self.settings.cancel_on_disconnect:
                with contextlib.suppress(RedisDown):
                    await broker.cancel(group.name, job_id, submitted.entry)
        finally:
            gone.cancel()
            replies.unwatch(job_id)

    async def _read_body(self, receive: Receive) -> bytes | None:
        limit = self.settings.max_body_bytes
        parts: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return b""
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return None
            parts.append(chunk)
            if not message.get("more_body", False):
                return b"".join(parts)

    async def _disconnected(self, receive: Receive, mailbox: Mailbox) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        mailbox.hang_up()

    async def _relay(
        self,
        job_id: str,
        location: str,
        group: GroupSettings,
        mailbox: Mailbox,
        send: Send,
    ) -> None:
        deadline = time.monotonic() + group.reply_timeout
        started = False
        while True:
            left = deadline - time.monotonic()
            if left <= 0 and not started:
                await self._accepted(send, job_id, location)
                return
            try:
                entries = await mailbox.get(None if started else left)
            except TimeoutError:
                continue
            if entries is None:
                if started:
                    raise _Aborted(f"redis went down while job {job_id} was answering")
                await self._unavailable(send, "Service Unavailable: the queue is unreachable")
                return
            events = [e for _, fields in entries if (e := _event(fields)) is not None]
            for index, event in enumerate(events):
                if isinstance(event, Reset):
                    if started:
                        raise _Aborted(f"job {job_id} restarted after its answer had begun")
                    continue
                if isinstance(event, Failed):
                    if started:
                        raise _Aborted(f"job {job_id} failed after its answer had begun")
                    await self._answer(send, _plain(event.status, event.reason + "\n"))
                    return
                if isinstance(event, Start):
                    started = True
                    headers = [*event.headers, (b"x-job-id", job_id.encode())]
                    await send(
                        {"type": "http.response.start", "status": event.status, "headers": headers}
                    )
                elif isinstance(event, Chunk):
                    # The last chunk and the end in one batch (a plain response): one message.
                    last = index + 1 < len(events) and isinstance(events[index + 1], End)
                    await send(
                        {"type": "http.response.body", "body": event.data, "more_body": not last}
                    )
                    if last:
                        return
                elif isinstance(event, End):
                    await send({"type": "http.response.body", "body": b""})
                    return

    async def _accepted(self, send: Send, job_id: str, location: str) -> None:
        body = json.dumps({"job": job_id, "location": location}).encode() + b"\n"
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"location", location.encode()),
            *self._retry,
        ]
        await self._answer(
            send,
            [
                {"type": "http.response.start", "status": 202, "headers": headers},
                {"type": "http.response.body", "body": body},
            ],
        )

    # ---------------------------------------------------------------- the Location

    async def _location(self, scope: Scope, send: Send, rest: str) -> None:
        name, _, job_id = rest.partition("/")
        if name not in self.by_name or not job_id.isalnum() or len(job_id) > 64:
            await self._answer(send, _plain(404, "Not Found: no such job\n"))
            return
        if scope["method"] not in ("GET", "HEAD"):
            await self._answer(
                send, _plain(405, "Method Not Allowed\n", [(b"allow", b"GET, HEAD")])
            )
            return
        try:
            known, entries = await self.broker.stored_reply(job_id)
        except RedisDown:
            await self._unavailable(send, "Service Unavailable: the queue is unreachable")
            return
        reply = Reply()
        reply.feed(e for _, fields in entries if (e := _event(fields)) is not None)
        if not known and not entries:
            await self._answer(send, _plain(404, "Not Found: no such job (or it expired)\n"))
            return
        accept = b""
        for key, value in scope.get("headers", ()):
            if bytes(key).lower() == b"accept":
                accept = bytes(value)
        if b"text/event-stream" in accept:
            await self._events(send, job_id, reply)
            return
        if not reply.done:
            await self._accepted(send, job_id, f"{JOBS}{name}/{job_id}")
            return
        await self._answer(send, _stored(reply))

    async def _events(self, send: Send, job_id: str, stored: Reply) -> None:
        """Push the result as Server-Sent Events once it is complete (``event: result``)."""
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream"),
                    (b"cache-control", b"no-cache"),
                ],
            }
        )
        reply = stored
        if not reply.done:
            # The reader hands over every entry from the first: fold them into a fresh Reply.
            reply = Reply()
            mailbox = self.replies.follow(job_id)
            try:
                while not reply.done:
                    try:
                        entries = await mailbox.get(_SSE_KEEPALIVE)
                    except TimeoutError:
                        await send(_KEEPALIVE)
                        continue
                    if entries is None:
                        raise RedisDown(self.settings.url)
                    reply.feed(e for _, fields in entries if (e := _event(fields)) is not None)
            except RedisDown:
                await send({"type": "http.response.body", "body": b"event: error\ndata: redis\n\n"})
                return
            finally:
                self.replies.unwatch(job_id)
        await send({"type": "http.response.body", "body": sse_result(job_id, reply)})


def _event(fields: dict[bytes, bytes]) -> Event | None:
    try:
        return decode_event(fields)
    except JobError as exc:
        log.warning("ignoring a reply entry: %s", exc)
        return None


def _stored(reply: Reply) -> list[Message]:
    if reply.failed:
        return _plain(reply.status, reply.failed + "\n")
    headers = [
        (k, v)
        for k, v in reply.headers
        if k.lower() not in (b"content-length", b"transfer-encoding")
    ]
    body = reply.body
    headers.append((b"content-length", str(len(body)).encode()))
    return [
        {"type": "http.response.start", "status": reply.status, "headers": headers},
        {"type": "http.response.body", "body": body},
    ]


def sse_result(job_id: str, reply: Reply) -> bytes:
    """The result as one Server-Sent Event: the status, then each body line as a data line."""
    text = reply.failed if reply.failed else reply.body.decode("utf-8", "replace")
    lines = [f"id: {job_id}", "event: result", f"data: {reply.status}"]
    lines += [f"data: {line}" for line in text.split("\n")]
    return ("\n".join(lines) + "\n\n").encode()


def queued_app(
    app: ASGIApp, groups: Sequence[GroupSettings], settings: QueueSettings
) -> QueueRelay:
    """The default group's app with the queue-fed groups' routes intercepted."""
    return QueueRelay(app, [g for g in groups if g.queue], settings)
