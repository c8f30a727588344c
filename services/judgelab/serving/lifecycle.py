"""Run a service process until SIGTERM/SIGINT, then stop it gracefully.

The process prints one JSON line on stdout once it serves ({"service", "grpc", "metrics"}),
so launchers (the local runtime, tests) learn the ports it bound without guessing.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from judgelab.queues.connection import stop_waiting_for_redis

log = logging.getLogger(__name__)


def announce(fields: Mapping[str, object]) -> None:
    sys.stdout.write(json.dumps(dict(fields), sort_keys=True) + "\n")
    sys.stdout.flush()


def run_until_signalled(stops: Sequence[Callable[[], None]]) -> None:
    """Block until SIGTERM or SIGINT, then call ``stops`` in order (each drains its work)."""
    stopping = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("received %s: finishing in-flight work", signal.Signals(signum).name)
        stop_waiting_for_redis()  # a Redis that is gone (stopped with us) must not hold us up
        stopping.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_signal)
    while not stopping.wait(timeout=1.0):
        pass
    for stop in stops:
        stop()
    log.info("stopped cleanly")


def consumer_name() -> str:
    """Unique per process and stable for its life: host name and pid."""
    return f"{socket.gethostname()}-{os.getpid()}"


class WorkerThreads:
    """Stream workers on threads; ``stop`` lets each finish the batch it holds."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.streams: list[str] = []

    def start(self, worker: Any) -> None:
        thread = threading.Thread(
            target=worker.run,
            args=(self._stop,),
            daemon=True,
            name=f"worker-{worker.consumer.stream}",
        )
        thread.start()
        self._threads.append(thread)
        self.streams.append(worker.consumer.stream)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()
