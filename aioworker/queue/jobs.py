"""Jobs and reply events as Redis stream fields: encode and decode, pure (no I/O, no clock).

A job is what the consumer needs to rebuild the ASGI request: the scope's fields, the headers,
the whole body and the job id. The reply is a sequence of events (`Start`, `Chunk`, `End`,
`Failed`, `Reset`) written to the job's own reply stream as the app sends them, so a streaming
response streams through; `Reply` folds them into the stored response the Location returns.
Headers and raw paths travel as latin-1 text inside JSON: every byte value round-trips.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aioworker._types import Scope

__all__ = [
    "Chunk",
    "End",
    "Event",
    "Failed",
    "Job",
    "JobError",
    "Reply",
    "Reset",
    "Start",
    "decode_event",
    "decode_job",
    "encode_event",
    "encode_job",
    "job_from_scope",
    "scope_of",
]

Fields = Mapping[bytes, bytes]


class JobError(ValueError):
    """Stream fields that are not a job or a reply event (another writer, a corrupt entry)."""


@dataclass(frozen=True, slots=True)
class Job:
    """One queued request: everything the app's scope and receive() need."""

    id: str
    method: str
    path: str
    raw_path: bytes
    query_string: bytes
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes = b""
    scheme: str = "http"
    root_path: str = ""
    http_version: str = "1.1"
    client: tuple[str, int] | None = None
    server: tuple[str, int] | None = None
    reply_to: str = ""  # the waiting process's inbox stream ('' = none waits)


def job_from_scope(scope: Scope, body: bytes, job_id: str, reply_to: str = "") -> Job:
    """The job for an HTTP scope and its whole body."""
    client = scope.get("client")
    server = scope.get("server")
    return Job(
        id=job_id,
        method=scope["method"],
        path=scope["path"],
        raw_path=scope.get("raw_path") or scope["path"].encode("utf-8"),
        query_string=scope.get("query_string", b""),
        headers=tuple((bytes(k), bytes(v)) for k, v in scope.get("headers", ())),
        body=body,
        scheme=scope.get("scheme", "http"),
        root_path=scope.get("root_path", ""),
        http_version=scope.get("http_version", "1.1"),
        client=(str(client[0]), int(client[1])) if client else None,
        server=(str(server[0]), int(server[1] or 0)) if server else None,
        reply_to=reply_to,
    )


def _text(value: bytes) -> str:
    return value.decode("latin-1")


def _bytes(value: Any) -> bytes:
    if not isinstance(value, str):
        raise JobError(f"expected a string, got {type(value).__name__}")
    return value.encode("latin-1")


def encode_job(job: Job) -> dict[bytes, bytes]:
    """The stream fields of a job: its id, a JSON head and the raw body."""
    head = {
        "method": job.method,
        "path": job.path,
        "raw_path": _text(job.raw_path),
        "query": _text(job.query_string),
        "headers": [[_text(k), _text(v)] for k, v in job.headers],
        "scheme": job.scheme,
        "root_path": job.root_path,
        "http_version": job.http_version,
        "client": list(job.client) if job.client else None,
        "server": list(job.server) if job.server else None,
        "reply_to": job.reply_to,
    }
    return {b"id": job.id.encode(), b"head": json.dumps(head).encode(), b"body": job.body}


def _pair(value: Any) -> tuple[str, int] | None:
    if value is None:
        return None
    if not isinstance(value, list) or len(value) != 2:
        raise JobError(f"expected [host, port], got {value!r}")
    return (str(value[0]), int(value[1]))


def decode_job(fields: Fields) -> Job:
    """The job in a stream entry; JobError when the entry is not one."""
    try:
        head = json.loads(fields[b"head"])
        return Job(
            id=fields[b"id"].decode("ascii"),
            method=str(head["method"]),
            path=str(head["path"]),
            raw_path=_bytes(head["raw_path"]),
            query_string=_bytes(head["query"]),
            headers=tuple((_bytes(k), _bytes(v)) for k, v in head["headers"]),
            body=fields.get(b"body", b""),
            scheme=str(head["scheme"]),
            root_path=str(head["root_path"]),
            http_version=str(head["http_version"]),
            client=_pair(head["client"]),
            server=_pair(head["server"]),
            reply_to=str(head.get("reply_to", "")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise JobError(f"not a job: {exc!r}") from None


def scope_of(job: Job) -> Scope:
    """The ASGI HTTP scope the queue-fed worker runs the app with."""
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": job.http_version,
        "method": job.method,
        "scheme": job.scheme,
        "path": job.path,
        "raw_path": job.raw_path,
        "query_string": job.query_string,
        "root_path": job.root_path,
        "headers": [list(pair) for pair in job.headers],
        "client": job.client,
        "server": job.server,
        "extensions": {},
    }


# --------------------------------------------------------------------------- reply events


@dataclass(frozen=True, slots=True)
class Start:
    """The app's http.response.start."""

    status: int
    headers: tuple[tuple[bytes, bytes], ...] = ()


@dataclass(frozen=True, slots=True)
class Chunk:
    """A piece of the body, as the app sent it."""

    data: bytes


@dataclass(frozen=True, slots=True)
class End:
    """The response is complete."""


@dataclass(frozen=True, slots=True)
class Failed:
    """The job failed for good (the app raised before answering, or too many attempts)."""

    status: int
    reason: str


@dataclass(frozen=True, slots=True)
class Reset:
    """A new attempt begins: what an earlier attempt wrote is void."""

    attempt: int


Event = Start | Chunk | End | Failed | Reset


def encode_event(event: Event) -> dict[bytes, bytes]:
    """The stream fields of a reply event."""
    if isinstance(event, Chunk):
        return {b"t": b"b", b"d": event.data}
    if isinstance(event, Start):
        headers = json.dumps([[_text(k), _text(v)] for k, v in event.headers])
        return {b"t": b"s", b"s": str(event.status).encode(), b"h": headers.encode()}
    if isinstance(event, End):
        return {b"t": b"e"}
    if isinstance(event, Failed):
        return {b"t": b"f", b"s": str(event.status).encode(), b"r": event.reason.encode()}
    return {b"t": b"r", b"a": str(event.attempt).encode()}


def decode_event(fields: Fields) -> Event:
    """The reply event in a stream entry; JobError when it is not one."""
    try:
        kind = fields[b"t"]
        if kind == b"b":
            return Chunk(fields[b"d"])
        if kind == b"s":
            pairs = json.loads(fields[b"h"])
            headers = tuple((_bytes(k), _bytes(v)) for k, v in pairs)
            return Start(int(fields[b"s"]), headers)
        if kind == b"e":
            return End()
        if kind == b"f":
            return Failed(int(fields[b"s"]), fields[b"r"].decode("utf-8", "replace"))
        if kind == b"r":
            return Reset(int(fields[b"a"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise JobError(f"not a reply event: {exc!r}") from None
    raise JobError(f"unknown reply event type {kind!r}")


@dataclass(slots=True)
class Reply:
    """A response folded from reply events: what the Location serves once `done`."""

    status: int = 0
    headers: tuple[tuple[bytes, bytes], ...] = ()
    chunks: list[bytes] = field(default_factory=list)
    done: bool = False
    failed: str = ""

    def feed(self, events: Iterable[Event]) -> None:
        for event in events:
            if self.done:
                return  # a late duplicate (a job run twice) changes nothing once complete
            if isinstance(event, Start):
                self.status, self.headers = event.status, event.headers
            elif isinstance(event, Chunk):
                self.chunks.append(event.data)
            elif isinstance(event, End):
                self.done = True
            elif isinstance(event, Failed):
                self.status, self.headers, self.chunks = event.status, (), []
                self.failed, self.done = event.reason, True
            else:
                self.status, self.headers, self.chunks = 0, (), []

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)
