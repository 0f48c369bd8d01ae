"""Fixtures of the queue-fed group tests: a real redis-server per test, and config text."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers.redis import RedisServer, redis_server


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server
