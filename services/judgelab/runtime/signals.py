"""SIGINT, SIGTERM and SIGHUP become one `Interrupted` exception in the main thread.

Only the first signal raises: a second Ctrl-C while the runtime stops its children must not
cut that cleanup short (it is bounded by the supervisor's grace period).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from judgelab.runtime.errors import Interrupted

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextmanager
def signals_interrupt() -> Iterator[None]:
    """Within the block, the first of SIGNALS raises Interrupted (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    raised = False

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        nonlocal raised
        if not raised:
            raised = True
            raise Interrupted(signum)

    previous: dict[int, Any] = {s: signal.signal(s, on_signal) for s in SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
