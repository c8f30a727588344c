"""Session-wide fixtures: a real redis-server for the tests that need one (started on first use)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from support.redis_server import RedisServer, RedisServerMissing


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One redis-server (AOF on) for the session. Missing redis-server fails, never skips."""
    try:
        server = RedisServer()
    except RedisServerMissing as exc:
        pytest.fail(str(exc), pytrace=False)
    with server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session server's URL, emptied (and restarted if a test stopped it) before the test."""
    if not redis_server.running:
        redis_server.start()
    client = redis.Redis.from_url(redis_server.url)
    try:
        client.flushall()
    finally:
        client.close()
    return redis_server.url
