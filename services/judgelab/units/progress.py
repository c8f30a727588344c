"""Progress of a unit's steps: ``k/n``, rate and ETA, to a callback or as lines on stderr."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

#: ``(done, total, note)``; the local runtime passes its ``UnitContext.report``.
ProgressFn = Callable[[int, int, str], None]

#: Least seconds between two stderr lines of one step (the first and last always print).
LINE_EVERY_S = 2.0


def stderr_progress(stream: TextIO | None = None, label: str = "annotate") -> ProgressFn:
    """A ProgressFn that prints ``[label] <note>`` lines, at most one every LINE_EVERY_S."""
    out = stream if stream is not None else sys.stderr
    last: dict[str, float] = {}

    def show(done: int, total: int, note: str) -> None:
        step = note.split(" ", 1)[0]
        now = time.monotonic()
        if done not in (0, total) and now - last.get(step, 0.0) < LINE_EVERY_S:
            return
        last[step] = now
        out.write(f"[{label}] {note}\n")
        out.flush()

    return show


class Step:
    """One counted step (e.g. "gold"): reports ``name k/n (rate/s, ETA s)`` as work lands."""

    def __init__(self, name: str, total: int, report: ProgressFn) -> None:
        self.name = name
        self.total = total
        self.done = 0
        self._report = report
        self._started = time.monotonic()
        self._report(0, total, f"{name} 0/{total}")

    def advance(self, count: int = 1) -> None:
        self.done += count
        elapsed = time.monotonic() - self._started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else None
        timing = f"{rate:.2f}/s, ETA {eta:.0f} s" if eta is not None else f"{rate:.2f}/s"
        self._report(self.done, self.total, f"{self.name} {self.done}/{self.total} ({timing})")
