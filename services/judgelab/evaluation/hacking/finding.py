"""What a detector reports: which pattern, where in the response, and a short piece of evidence."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

EVIDENCE_CHARS = 80


@dataclass(frozen=True)
class Finding:
    """One detected pattern; ``response[start:end]`` is the matched span."""

    detector: str
    start: int
    end: int
    evidence: str


#: A detector: (response, prompt or None) -> a Finding for its first occurrence, or None.
Detector = Callable[[str, str | None], Finding | None]


def snippet(text: str, limit: int = EVIDENCE_CHARS) -> str:
    """``text`` on one line, whitespace collapsed, cut to ``limit`` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def found(detector: str, response: str, start: int, end: int, note: str = "") -> Finding:
    """A Finding whose evidence is ``note`` or, without one, the matched text."""
    return Finding(detector, start, end, snippet(note or response[start:end]))
