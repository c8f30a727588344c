"""Run a service process until SIGTERM/SIGINT, then stop it gracefully.

The process prints one JSON line on stdout once it serves ({"service", "grpc", "metrics"}),
so launchers (the local runtime, tests) learn the ports it bound without guessing.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from collections.abc import Callable, Mapping, Sequence

log = logging.getLogger(__name__)


def announce(fields: Mapping[str, object]) -> None:
    sys.stdout.write(json.dumps(dict(fields), sort_keys=True) + "\n")
    sys.stdout.flush()


def run_until_signalled(stops: Sequence[Callable[[], None]]) -> None:
    """Block until SIGTERM or SIGINT, then call ``stops`` in order (each drains its work)."""
    stopping = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("received %s: finishing in-flight work", signal.Signals(signum).name)
        stopping.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_signal)
    while not stopping.wait(timeout=1.0):
        pass
    for stop in stops:
        stop()
    log.info("stopped cleanly")
