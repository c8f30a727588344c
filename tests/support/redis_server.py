"""A real ``redis-server`` on a free 127.0.0.1 port in a temporary directory, for tests.

AOF is on (``appendfsync everysec``) and RDB snapshots are off, so ``restart()`` shows what a
restarted production Redis keeps: everything written before a clean shutdown, and all but about
the last second after ``kill()``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import redis

INSTALL_HINT = (
    "redis-server is not installed: apt-get install redis-server "
    "(or set JUDGELAB_REDIS_SERVER to the binary)"
)
START_TIMEOUT_S = 10.0


class RedisServerMissing(RuntimeError):
    """No redis-server binary on PATH (or at $JUDGELAB_REDIS_SERVER)."""


def find_redis_server() -> str:
    found = os.environ.get("JUDGELAB_REDIS_SERVER") or shutil.which("redis-server")
    if not found or not Path(found).exists():
        raise RedisServerMissing(INSTALL_HINT)
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """``with RedisServer() as server: redis.Redis.from_url(server.url)``."""

    def __init__(self, binary: str | None = None) -> None:
        self.binary = binary or find_redis_server()
        self._tmp = tempfile.TemporaryDirectory(prefix="judgelab-redis-")
        self.dir = Path(self._tmp.name)
        self.port = free_port()
        self.log = self.dir / "redis.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def unix_url(self) -> str:
        return f"unix://{self.dir / 'redis.sock'}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> RedisServer:
        if self.running:
            return self
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.dir),
            "--logfile", str(self.log),
            "--unixsocket", str(self.dir / "redis.sock"),
            "--unixsocketperm", "700",
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--save", "",
            "--daemonize", "no",
        ]  # fmt: skip
        self._proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self._wait_until_up()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """Clean shutdown (SIGTERM: Redis flushes the AOF first)."""
        self._end(signal.SIGTERM, timeout_s)

    def kill(self) -> None:
        """SIGKILL, like a crashed node: the last second of AOF writes may be lost."""
        self._end(signal.SIGKILL, 5.0)

    def restart(self) -> None:
        """Stop (if running) and start again on the same port and directory (same AOF)."""
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        self._tmp.cleanup()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _end(self, sig: signal.Signals, timeout_s: float) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()

    def _wait_until_up(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1.0)
        try:
            while time.monotonic() < deadline:
                if not self.running:
                    break
                try:
                    if client.ping():
                        return
                except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
                    time.sleep(0.02)
        finally:
            client.close()
        self._fail_start()

    def _fail_start(self) -> None:
        stderr = b""
        if self._proc is not None and self._proc.poll() is not None and self._proc.stderr:
            stderr = self._proc.stderr.read()
        self._end(signal.SIGKILL, 5.0)
        log = self.log.read_text(errors="replace") if self.log.exists() else ""
        tail = "\n".join((log + stderr.decode(errors="replace")).splitlines()[-20:])
        raise RuntimeError(
            f"redis-server did not answer PING on 127.0.0.1:{self.port} within "
            f"{START_TIMEOUT_S:.0f} s. Log tail:\n{tail}"
        )
