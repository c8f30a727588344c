"""Connecting to Redis from a URL, with a clear error when it cannot be reached.

URLs: ``redis://[user:password@]host[:port][/db]``, ``rediss://`` (TLS; ``?ssl_cert_reqs=none``,
``?ssl_ca_certs=/path`` and redis-py's other query options work) and ``unix:///path.sock``.

Clients are made with ``decode_responses=False``: stream ids, field names and payloads come back
as bytes. The queue code decodes ids itself, and a payload that is not UTF-8 becomes one
:class:`~judgelab.queues.codec.BadMessage` for that entry instead of a decode error that breaks
the whole batch inside redis-py.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.connection import parse_url
from redis.exceptions import AuthenticationError, ResponseError
from redis.retry import Retry

_log = logging.getLogger(__name__)
_RETRYABLE = (redis.ConnectionError, redis.TimeoutError, OSError)
BACKOFF_BASE_S = 0.1
BACKOFF_CAP_S = 2.0
OUTAGE_LOG_EVERY_S = 30.0
# Set once the process shuts down: waiting out an outage would then keep it alive for ever.
_shutting_down = threading.Event()


def stop_waiting_for_redis() -> None:
    """From now on, calls fail at once when Redis is unreachable (a shutting-down process)."""
    _shutting_down.set()


def pause_unless_stopping(seconds: float) -> bool:
    """Sleep ``seconds``, cut short by :func:`stop_waiting_for_redis`; True if it was."""
    return _shutting_down.wait(seconds)


T = TypeVar("T")


class RedisUnavailable(Exception):
    """Redis could not be reached or refused us; the message names host:port and the cause."""

    def __init__(self, message: str, cause: str = "") -> None:
        super().__init__(message)
        self.cause = cause  # the last error, "Type: text", password masked


class RedisRefused(RedisUnavailable):
    """Redis answered but refused us (credentials, ACL): retrying cannot help."""


def target(url: str) -> str:
    """``host:port`` (or the socket path) a URL points at; never includes credentials."""
    kwargs = _parse(url)
    if "path" in kwargs:
        return str(kwargs["path"])
    return f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"


def _parse(url: str) -> dict[str, Any]:
    return cast(dict[str, Any], parse_url(url))  # type: ignore[no-untyped-call]


def redact(url: str) -> str:
    """The URL with its password replaced by ``***`` (for logs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def connection_kwargs(
    url: str, *, timeout_s: float = 5.0, socket_timeout_s: float | None = 30.0, attempts: int = 5
) -> dict[str, Any]:
    """The ``redis.ConnectionPool`` keyword arguments for ``url`` (query options win)."""
    kwargs: dict[str, Any] = {
        "socket_connect_timeout": timeout_s,
        "socket_timeout": socket_timeout_s,
        "health_check_interval": 30,
        "decode_responses": False,
        "retry": command_retry(attempts),
    }
    kwargs.update(_parse(url))
    if "path" not in kwargs:
        kwargs.setdefault("socket_keepalive", True)
    if kwargs.get("protocol", 2) != 2:
        raise ValueError("the queue code reads RESP2 replies: drop protocol=3 from the Redis URL")
    return kwargs


def command_retry(attempts: int) -> Retry:
    """Retries of a command on connection errors and timeouts, with jittered back-off.

    Retrying can repeat a write whose reply was lost; consumers are idempotent for that reason.
    """
    backoff = ExponentialWithJitterBackoff(cap=BACKOFF_CAP_S, base=BACKOFF_BASE_S)
    return Retry(backoff, max(0, attempts - 1))


def backoff_s(attempt: int, rng: random.Random | None = None) -> float:
    """Full-jitter delay before retry ``attempt + 1``: uniform(0, min(cap, base * 2**attempt))."""
    ceiling = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2.0**attempt)
    return (rng or random).uniform(0.0, ceiling)


def connect(
    url: str,
    *,
    attempts: int = 5,
    timeout_s: float = 5.0,
    socket_timeout_s: float | None = 30.0,
) -> redis.Redis:
    """A client for ``url`` that answered PING, trying ``attempts`` times with back-off.

    ``timeout_s`` bounds each connection attempt; ``socket_timeout_s`` bounds each command
    (blocking reads must block for less). Raises :class:`RedisUnavailable` when every attempt
    fails or the server refuses the credentials (not retried), ValueError for a malformed URL.
    """
    if attempts < 1:
        raise ValueError(f"attempts must be >= 1, got {attempts}")
    kwargs = connection_kwargs(
        url, timeout_s=timeout_s, socket_timeout_s=socket_timeout_s, attempts=attempts
    )
    operational_retry = kwargs.pop("retry")
    # The probe retries here, not inside redis-py, so `attempts` means what it says.
    client = redis.Redis(
        connection_pool=redis.ConnectionPool(retry=Retry(NoBackoff(), 0), **kwargs)
    )
    try:
        _probe(client, url, attempts)
    except RedisUnavailable:
        client.close()
        raise
    client.set_retry(operational_retry)
    return client


def _probe(client: redis.Redis, url: str, attempts: int) -> None:
    for attempt in range(attempts):
        try:
            client.ping()
            return
        except (AuthenticationError, ResponseError) as exc:
            raise _unavailable(url, "refused the connection", exc, RedisRefused) from exc
        except _RETRYABLE as exc:
            if attempt + 1 == attempts:
                raise _unavailable(url, f"unreachable after {attempts} attempt(s)", exc) from exc
            client.connection_pool.disconnect()
            time.sleep(backoff_s(attempt))


def _unavailable(
    url: str, what: str, exc: BaseException, kind: type[RedisUnavailable] = RedisUnavailable
) -> RedisUnavailable:
    text = " ".join(str(exc).split()) or type(exc).__name__
    password = _parse(url).get("password")
    if password:
        text = text.replace(str(password), "***")
    cause = f"{type(exc).__name__}: {text}"
    return kind(f"Redis at {target(url)} {what}: {cause}", cause)


def through_outages(
    client: redis.Redis, call: Callable[[], T], what: str, timeout_s: float | None = None
) -> T:
    """``call()``, retried with back-off for as long as Redis is unreachable (or loading).

    redis-py's own retry covers a blip of a second or two; this covers a restart. The first
    failure logs an error naming the server and the cause, then every ``OUTAGE_LOG_EVERY_S``;
    the recovery logs a warning. After ``timeout_s`` (None: never) it raises
    :class:`RedisUnavailable`; 0 re-raises redis-py's error at once. ``call`` must be safe to
    repeat (the queue's writes are idempotent by id; a lost reply may repeat one).
    """
    down_since: float | None = None
    logged_at = 0.0
    attempt = 0
    while True:
        try:
            result = call()
        except _RETRYABLE as exc:
            if timeout_s == 0:
                raise
            if _shutting_down.is_set():
                raise RedisUnavailable(
                    f"Redis at {client_target(client)} unreachable during {what} while shutting "
                    f"down: {type(exc).__name__}: {exc}"
                ) from exc
            now = time.monotonic()
            down_since = now if down_since is None else down_since
            where = client_target(client)
            if timeout_s is not None and now - down_since > timeout_s:
                raise RedisUnavailable(
                    f"Redis at {where} unreachable for {now - down_since:.0f} s during {what}: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            if attempt == 0 or now - logged_at >= OUTAGE_LOG_EVERY_S:
                logged_at = now
                _log.error(
                    "Redis at %s unreachable during %s for %.1f s (%s: %s); retrying",
                    where, what, now - down_since, type(exc).__name__, exc,
                )  # fmt: skip
            _shutting_down.wait(backoff_s(min(attempt, 8)))
            attempt += 1
            continue
        if down_since is not None:
            _log.warning(
                "Redis at %s answers again after %.1f s (%s)",
                client_target(client), time.monotonic() - down_since, what,
            )  # fmt: skip
        return result


def client_target(client: redis.Redis) -> str:
    """``host:port`` (or socket path) of a client's server, for messages; no credentials."""
    kwargs = client.connection_pool.connection_kwargs
    if "path" in kwargs:
        return str(kwargs["path"])
    return f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"
