"""The run's Redis: the one named by REDIS_URL / spec.runtime.redis_url, or a local redis-server.

The local one keeps its data (append-only file) under RUN/redis, so a resumed run finds the
streams, caches and consumer groups the interrupted one left.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from collections.abc import Callable
from pathlib import Path

import redis

from judgelab.runtime.errors import RedisServerMissing, RuntimeSetupError
from judgelab.runtime.supervisor import Supervisor

INSTALL_HINT = "sudo apt-get install redis-server"
BINARY_ENV = "JUDGELAB_REDIS_SERVER"
REDIS = "redis"
PING_TIMEOUT_S = 15.0


def configured_redis_url(spec_url: str | None) -> str | None:
    """REDIS_URL from the environment wins over the experiment's runtime.redis_url."""
    return os.environ.get("REDIS_URL") or spec_url or None


def find_redis_server() -> str:
    """The redis-server binary ($JUDGELAB_REDIS_SERVER or PATH), or a message saying how to
    install it."""
    found = os.environ.get(BINARY_ENV) or shutil.which("redis-server")
    if not found or not Path(found).exists():
        raise RedisServerMissing(
            "redis-server is not installed, and neither REDIS_URL nor spec.runtime.redis_url "
            f"names a Redis to use. Install it with `{INSTALL_HINT}` (macOS: `brew install "
            "redis`), or set REDIS_URL=redis://HOST:PORT/0."
        )
    return found


def check_redis(url: str) -> None:
    """PING a given Redis; a clear error if it does not answer."""
    if not ping(url, PING_TIMEOUT_S):
        raise RuntimeSetupError(
            f"Redis at {url} does not answer PING within {PING_TIMEOUT_S:g} s: start it, "
            "or unset REDIS_URL / spec.runtime.redis_url to let the runtime start its own."
        )


def start_local_redis(supervisor: Supervisor, data_dir: Path, attempts: int = 3) -> str:
    """Start redis-server on a free 127.0.0.1 port (AOF in `data_dir`); its URL once it PINGs."""
    binary = find_redis_server()
    data_dir.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, attempts + 1):
        port = _free_port()
        argv = [
            binary,
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--dir", str(data_dir.resolve()),
            "--appendonly", "yes",
            "--appendfsync", "always",  # fsync before each reply: an ack survives a crash
            "--save", "",
            "--daemonize", "no",
            "--logfile", "",
        ]  # fmt: skip
        child = supervisor.start(REDIS, argv, announce=False, infrastructure=True)
        url = f"redis://127.0.0.1:{port}/0"
        if ping(url, PING_TIMEOUT_S, child.process.poll):
            return url
        failure = child.failure(f"did not answer PING on 127.0.0.1:{port}")
        supervisor.stop(REDIS)
        # Another process may have taken the port between choosing and binding it.
        if attempt == attempts or "Address already in use" not in failure.log_tail:
            raise failure
    raise AssertionError("unreachable")


def ping(url: str, timeout_s: float, exited: Callable[[], int | None] | None = None) -> bool:
    """Whether Redis answers PING within `timeout_s` (gives up early once `exited()` says so)."""
    client = redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            try:
                if client.ping():
                    return True
            except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
                pass
            if exited is not None and exited() is not None:
                return False
            time.sleep(0.05)
        return False
    finally:
        client.close()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
