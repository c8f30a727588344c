"""Waiting for Redis when a process starts.

Redis may come up after the service: a pod scheduled before the Redis pod, a redis-server still
loading its AOF, a failover. A starting service therefore waits for it up to a deadline, logging
one line per wait, instead of giving up after a few quick attempts; then it fails with one clear
line. Credentials refused are not waited out (retrying cannot help), and neither is an outage
once the process is told to stop (:func:`~judgelab.queues.connection.stop_waiting_for_redis`).
"""

from __future__ import annotations

import logging
import random
import time
from urllib.parse import urlsplit

import redis

from judgelab.queues.connection import (
    RedisRefused,
    RedisUnavailable,
    command_retry,
    connect,
    pause_unless_stopping,
    target,
)

_log = logging.getLogger(__name__)
DEFAULT_WAIT_S = 60.0
FIRST_DELAY_S = 0.25
MAX_DELAY_S = 5.0
MIN_ATTEMPT_S = 0.2  # the connect timeout of an attempt made just before the deadline
COMMAND_ATTEMPTS = 5  # redis-py's own retry of each later command, as `connect` gives


def display(url: str) -> str:
    """``scheme://host:port`` (``unix:///path``) of a Redis URL: no user, password or db."""
    scheme = urlsplit(url).scheme or "redis"
    return f"{scheme}://{target(url)}"


def next_delay_s(attempt: int, rng: random.Random | None = None) -> float:
    """Delay after failed attempt ``attempt`` (1-based): exponential, capped, half jittered."""
    ceiling = min(MAX_DELAY_S, FIRST_DELAY_S * 2.0 ** (attempt - 1))
    return (rng or random).uniform(ceiling / 2, ceiling)


def wait_for_redis(
    url: str,
    wait_s: float = DEFAULT_WAIT_S,
    *,
    timeout_s: float = 5.0,
    socket_timeout_s: float | None = 30.0,
) -> redis.Redis:
    """A client for ``url`` once Redis answers PING, trying for up to ``wait_s`` seconds.

    ``wait_s`` 0 makes one attempt. Raises :class:`RedisUnavailable` (one line, no password)
    when the deadline passes or the process is told to stop, :class:`RedisRefused` at once when
    the server refuses the credentials, ValueError for a malformed URL or a negative wait.
    """
    if wait_s < 0:
        raise ValueError(f"wait_s must be >= 0, got {wait_s}")
    started = time.monotonic()
    deadline = started + wait_s
    attempt = 0
    while True:
        attempt += 1
        limit = max(MIN_ATTEMPT_S, min(timeout_s, deadline - time.monotonic()))
        try:
            client = connect(url, attempts=1, timeout_s=limit, socket_timeout_s=socket_timeout_s)
        except RedisRefused:
            raise
        except RedisUnavailable as exc:
            left = deadline - time.monotonic()
            if left <= 0:
                waited = time.monotonic() - started
                raise RedisUnavailable(
                    f"Redis at {display(url)} did not answer within {waited:.0f} s "
                    f"({attempt} attempt(s)); last error: {exc.cause}",
                    exc.cause,
                ) from exc
            delay = min(next_delay_s(attempt), left)
            _log.warning(
                "waiting for Redis at %s (attempt %d, next in %.1f s): %s",
                display(url), attempt, delay, exc.cause,
            )  # fmt: skip
            if pause_unless_stopping(delay):
                raise RedisUnavailable(
                    f"Redis at {display(url)} unreachable and the process is stopping; "
                    f"last error: {exc.cause}",
                    exc.cause,
                ) from exc
            continue
        client.set_retry(command_retry(COMMAND_ATTEMPTS))
        if attempt > 1:
            _log.warning(
                "Redis at %s answers after %.1f s (%d attempts)",
                display(url), time.monotonic() - started, attempt,
            )  # fmt: skip
        return client
