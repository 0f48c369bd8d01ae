"""Jobs and reply events as stream fields: every byte round-trips, bad entries are JobError."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aioworker.queue.jobs import (
    Chunk,
    End,
    Event,
    Failed,
    Job,
    JobError,
    Reply,
    Reset,
    Start,
    decode_event,
    decode_job,
    encode_event,
    encode_job,
    job_from_scope,
    scope_of,
)

SCOPE = {
    "type": "http",
    "method": "POST",
    "scheme": "https",
    "path": "/report/ü",
    "raw_path": b"/report/%C3%BC",
    "query_string": b"a=1&b=\xff",
    "root_path": "/app",
    "http_version": "1.1",
    "headers": [(b"host", b"example"), (b"x-bin", bytes(range(128, 256)))],
    "client": ("10.0.0.1", 5555),
    "server": ("127.0.0.1", 8000),
}


def test_a_job_round_trips_to_the_same_scope() -> None:
    job = job_from_scope(SCOPE, b"\x00body\xff", "abc123")
    back = decode_job(encode_job(job))
    assert back == job
    scope = scope_of(back)
    for name in ("method", "scheme", "path", "raw_path", "query_string", "root_path"):
        assert scope[name] == SCOPE[name]
    assert [tuple(h) for h in scope["headers"]] == SCOPE["headers"]
    assert (scope["client"], scope["server"]) == (SCOPE["client"], SCOPE["server"])


@given(
    headers=st.lists(st.tuples(st.binary(min_size=1), st.binary()), max_size=5),
    body=st.binary(),
)
def test_any_header_and_body_bytes_round_trip(
    headers: list[tuple[bytes, bytes]], body: bytes
) -> None:
    job = Job("j", "GET", "/", b"/", b"", tuple(headers), body)
    assert decode_job(encode_job(job)) == job


@pytest.mark.parametrize(
    "event",
    [
        Start(201, ((b"content-type", b"text/plain"), (b"x", b"\xff"))),
        Chunk(b"\x00\xffdata"),
        End(),
        Failed(502, "gave up after 3 attempts"),
        Reset(2),
    ],
    ids=lambda e: type(e).__name__,
)
def test_reply_events_round_trip(event: Event) -> None:
    assert decode_event(encode_event(event)) == event


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({}, id="empty"),
        pytest.param({b"id": b"x", b"head": b"not json"}, id="head-not-json"),
        pytest.param({b"id": b"x", b"head": b"{}"}, id="head-without-keys"),
        pytest.param(
            {b"head": encode_job(Job("j", "GET", "/", b"/", b"", ()))[b"head"]}, id="no-id"
        ),
    ],
)
def test_entries_that_are_not_jobs(fields: dict[bytes, bytes]) -> None:
    with pytest.raises(JobError):
        decode_job(fields)


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({}, id="empty"),
        pytest.param({b"t": b"z"}, id="unknown-type"),
        pytest.param({b"t": b"s", b"s": b"abc", b"h": b"[]"}, id="status-not-a-number"),
        pytest.param({b"t": b"s", b"s": b"200", b"h": b"{"}, id="headers-not-json"),
        pytest.param({b"t": b"b"}, id="chunk-without-data"),
    ],
)
def test_entries_that_are_not_reply_events(fields: dict[bytes, bytes]) -> None:
    with pytest.raises(JobError):
        decode_event(fields)


def test_reply_folds_events_and_a_new_attempt_voids_the_old_one() -> None:
    reply = Reply()
    reply.feed([Start(200), Chunk(b"half")])  # the attempt of a worker that died
    reply.feed([Reset(2), Start(201, ((b"a", b"b"),)), Chunk(b"who"), Chunk(b"le"), End()])
    reply.feed([Start(500), Chunk(b"late duplicate"), End()])  # a second run after the end
    assert (reply.status, reply.headers, reply.body, reply.done) == (
        201,
        ((b"a", b"b"),),
        b"whole",
        True,
    )


def test_a_failed_reply_is_done_with_its_status() -> None:
    reply = Reply()
    reply.feed([Failed(502, "gave up")])
    assert (reply.status, reply.failed, reply.done, reply.body) == (502, "gave up", True, b"")
