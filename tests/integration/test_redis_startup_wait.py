"""A starting service waits for Redis up to a deadline, one log line per wait, no password shown;
then connects when Redis appears, or fails with one clear line (no traceback, exit code 1)."""

from __future__ import annotations

import logging
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import redis
from support.redis_server import RedisServer, free_port

from judgelab.queues.connection import RedisRefused
from judgelab.queues.startup import display, wait_for_redis

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "examples" / "quickstart.yaml"
SECRET = "s3cret-pw"


def test_display_never_shows_credentials() -> None:
    assert display(f"redis://worker:{SECRET}@10.0.0.5:6380/2") == "redis://10.0.0.5:6380"
    assert display(f"rediss://:{SECRET}@redis.example") == "rediss://redis.example:6379"
    assert display("unix:///run/redis.sock?db=1") == "unix:///run/redis.sock"


def test_waits_for_redis_that_starts_later(caplog: pytest.LogCaptureFixture) -> None:
    server = RedisServer()  # its port is chosen, nothing listens there yet
    starter = threading.Timer(1.5, server.start)
    caplog.set_level(logging.WARNING, logger="judgelab.queues.startup")
    started = time.monotonic()
    starter.start()
    try:
        client = wait_for_redis(server.url.replace("redis://", f"redis://:{SECRET}@"), 20)
        waited = time.monotonic() - started
        assert client.ping()
        client.close()
    finally:
        starter.join()
        server.close()
    assert 1.5 <= waited < 10
    waits = [r.getMessage() for r in caplog.records if r.getMessage().startswith("waiting")]
    assert waits and waits[0].startswith(
        f"waiting for Redis at redis://127.0.0.1:{server.port} (attempt 1, next in "
    )
    assert all("\n" not in line and SECRET not in line for line in waits)


def test_refused_credentials_are_not_waited_out(redis_url: str) -> None:
    admin = redis.Redis.from_url(redis_url)
    admin.acl_setuser("worker", enabled=True, passwords=["+right"], keys=["jl:*"],
                      commands=["+@all"])  # fmt: skip
    started = time.monotonic()
    try:
        with pytest.raises(RedisRefused, match="refused the connection"):
            wait_for_redis(redis_url.replace("redis://", "redis://worker:wrong@"), 30)
    finally:
        admin.acl_deluser("worker")
        admin.close()
    assert time.monotonic() - started < 5


def test_a_stopping_process_does_not_wait_out_the_deadline() -> None:
    """`stop_waiting_for_redis` (SIGTERM's handler) cuts the wait short (own process: it sticks)."""
    script = (
        "import time, threading\n"
        "from judgelab.queues.connection import stop_waiting_for_redis\n"
        "from judgelab.queues.startup import wait_for_redis\n"
        "threading.Timer(1.0, stop_waiting_for_redis).start()\n"
        "started = time.monotonic()\n"
        "try:\n"
        f"    wait_for_redis('redis://127.0.0.1:{free_port()}/0', 60)\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, round(time.monotonic() - started, 1), exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=30, check=True)  # fmt: skip
    kind, seconds, message = done.stdout.split(" ", 2)
    assert kind == "RedisUnavailable" and "stopping" in message
    assert 1.0 <= float(seconds) < 5


def _serve(url: str, wait_s: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "judgelab.cli", "serve", "rollout-generator", str(QUICKSTART),
         "--metrics-port", "-1", "--redis-url", url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "JUDGELAB_REDIS_WAIT_S": wait_s},
    )  # fmt: skip


def test_serve_fails_with_one_clear_line_when_redis_never_comes() -> None:
    port = free_port()
    started = time.monotonic()
    process = _serve(f"redis://worker:{SECRET}@127.0.0.1:{port}/0", "2")
    _, stderr = process.communicate(timeout=60)
    elapsed = time.monotonic() - started
    assert process.returncode == 1, stderr
    lines = stderr.strip().splitlines()
    assert lines[-1].startswith(
        f"rollout-generator: Redis at redis://127.0.0.1:{port} did not answer within 2 s ("
    ), stderr
    assert "Connection refused" in lines[-1]
    assert any(f"waiting for Redis at redis://127.0.0.1:{port} (attempt 1" in ln for ln in lines)
    assert "Traceback" not in stderr and SECRET not in stderr
    assert elapsed < 30  # imports (seconds on a busy 2-core machine) + the 2 s deadline


def test_serve_connects_once_redis_comes_up() -> None:
    server = RedisServer()
    process = _serve(server.url, "60")
    lines: queue.Queue[str] = queue.Queue()
    assert process.stderr is not None
    reader = threading.Thread(target=lambda: [lines.put(ln) for ln in process.stderr], daemon=True)
    reader.start()
    try:
        _wait_for_line(lines, "waiting for Redis at", 60)
        server.start()
        _wait_for_line(lines, f"Redis at redis://127.0.0.1:{server.port} answers after", 30)
        admin = redis.Redis.from_url(server.url)
        assert admin.info("clients")["connected_clients"] >= 2  # the service's and ours
        admin.close()
        assert process.poll() is None
    finally:
        process.kill()  # it goes on to load the policy model: not needed here
        process.wait()
        server.close()


def _wait_for_line(lines: queue.Queue[str], text: str, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    while True:
        left = deadline - time.monotonic()
        assert left > 0, f"no log line with {text!r}"
        try:
            line = lines.get(timeout=left)
        except queue.Empty:
            continue
        if text in line:
            return line


def test_the_client_keeps_redis_py_command_retries(redis_url: str) -> None:
    client = wait_for_redis(redis_url, 1)
    retry = client.get_retry()
    assert retry is not None and retry.get_retries() == 4  # as `connect`'s default 5 attempts
    client.close()
