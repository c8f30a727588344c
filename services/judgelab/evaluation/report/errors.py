"""The one error a malformed run directory raises: it names the file and, where known, the line."""

from __future__ import annotations

from pathlib import Path


class ReportInputError(ValueError):
    """A recorded input the report cannot read: ``path:line: what is wrong``."""

    def __init__(self, path: Path, message: str, line: int | None = None) -> None:
        self.path = path
        self.line = line
        self.detail = message
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {message}")
