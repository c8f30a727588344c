"""`SpecError`: every problem of a spec, one line each, never a traceback."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

MAX_VALUE_CHARS = 60


@dataclass(frozen=True)
class Problem:
    """One problem: where (file, dotted field path), the bad value, and what is allowed."""

    source: str
    path: str
    value: str | None
    message: str

    def line(self) -> str:
        """`<file>: <path>: <value> — <what is allowed>` on one line."""
        head = f"{self.source}: {self.path}: " if self.path else f"{self.source}: "
        body = f"{self.value} — {self.message}" if self.value is not None else self.message
        return _one_line(head + body)


class SpecError(Exception):
    """The spec is invalid; ``str()`` gives one line per problem."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__(self.__str__())

    def __str__(self) -> str:
        return "\n".join(p.line() for p in self.problems)

    @property
    def lines(self) -> list[str]:
        """One line per problem."""
        return [p.line() for p in self.problems]


def render_value(value: object) -> str:
    """A short, one-line rendering of a bad value (JSON-like, truncated)."""
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except ValueError:  # circular structures (YAML anchors can build them)
        text = "{...}"
    if len(text) > MAX_VALUE_CHARS:
        text = text[: MAX_VALUE_CHARS - 1] + "…"
    return _one_line(text)


def _one_line(text: str) -> str:
    return " ".join(text.split())
