"""Past reply_timeout: 202 with a Location, the stored result there, or pushed as SSE."""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.helpers.burst import fetch
from tests.helpers.master import running_master
from tests.helpers.redis import RedisServer
from tests.queue.configs import queue_config, queue_group, web_group


def test_a_5s_job_with_reply_timeout_1_gets_202_then_its_stored_result(
    redis: RedisServer,
) -> None:
    config = queue_config(redis.url, web_group() + queue_group(reply_timeout=1.0))
    with running_master(config) as master:
        address = master.url("web")
        first = asyncio.run(fetch(address, "/long?ms=5000"))
        assert first.status == 202
        assert 1.0 <= first.seconds < 3.0
        location = first.headers["location"]
        assert json.loads(first.body) == {"job": location.rsplit("/", 1)[1], "location": location}

        assert asyncio.run(fetch(address, location)).status == 202  # still running
        # Wait for completion through the event stream, then fetch the stored result.
        pushed = asyncio.run(fetch(address, location, {"Accept": "text/event-stream"}))
        assert pushed.status == 200
        stored = asyncio.run(fetch(address, location))
        assert (stored.status, stored.body) == (200, b"long done")
        assert stored.headers["content-type"] == "text/plain"


def test_sse_on_the_location_pushes_the_result_when_it_completes(redis: RedisServer) -> None:
    config = queue_config(redis.url, web_group() + queue_group(reply_timeout=1.0))
    with running_master(config) as master:
        address = master.url("web")
        first = asyncio.run(fetch(address, "/long?ms=3000"))
        assert first.status == 202
        job = first.headers["location"].rsplit("/", 1)[1]
        pushed = asyncio.run(
            fetch(address, first.headers["location"], {"Accept": "text/event-stream"})
        )
        assert pushed.status == 200
        assert pushed.headers["content-type"] == "text/event-stream"
        assert pushed.body == f"id: {job}\nevent: result\ndata: 200\ndata: long done\n\n".encode()
        # Asked again once complete, the stream answers at once.
        again = asyncio.run(
            fetch(address, first.headers["location"], {"Accept": "text/event-stream"})
        )
        assert again.body == pushed.body
        assert again.seconds < 1.0


def test_a_streaming_answer_streams_through(redis: RedisServer) -> None:
    config = queue_config(redis.url, web_group() + queue_group())
    with running_master(config) as master:
        answer = asyncio.run(fetch(master.url("web"), "/stream"))
        assert (answer.status, answer.body) == (200, b"one two three")
        assert answer.headers["transfer-encoding"] == "chunked"


@pytest.mark.parametrize(
    ("path", "status"),
    [
        pytest.param("/_aioworker/jobs/report/0123abcd", 404, id="unknown-job"),
        pytest.param("/_aioworker/jobs/nosuchgroup/0123abcd", 404, id="unknown-group"),
        pytest.param("/_aioworker/jobs/report/..%2f..", 404, id="not-an-id"),
        pytest.param("/_aioworker/jobs/report/", 404, id="no-id"),
    ],
)
def test_bad_locations(redis: RedisServer, path: str, status: int) -> None:
    config = queue_config(redis.url, web_group() + queue_group(count=1))
    with running_master(config) as master:
        assert asyncio.run(fetch(master.url("web"), path)).status == status


def test_a_location_answers_only_get_and_head(redis: RedisServer) -> None:
    config = queue_config(redis.url, web_group() + queue_group(count=1))
    with running_master(config) as master:

        async def delete() -> bytes:
            reader, writer = await asyncio.open_connection(*master.url("web"))
            writer.write(
                b"DELETE /_aioworker/jobs/report/0123abcd HTTP/1.1\r\nHost: t\r\n"
                b"Connection: close\r\n\r\n"
            )
            answer = await reader.read(-1)
            writer.close()
            return answer

        head = asyncio.run(delete()).partition(b"\r\n\r\n")[0].lower()
        assert head.startswith(b"http/1.1 405 ")
        assert b"\r\nallow: get, head\r\n" in head + b"\r\n"
