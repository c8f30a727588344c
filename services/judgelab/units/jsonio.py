"""JSON Lines files a crash cannot leave half-written: whole files replaced atomically, and an
append-only log whose torn last line is cut off before anything is appended to it."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from judgelab.atomic_files import write_text_atomic


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def write_jsonl_atomic(path: Path, rows: Iterable[Any]) -> int:
    """Replace ``path`` with one JSON object per line; returns the number of lines."""
    lines = [dumps(row) + "\n" for row in rows]
    write_text_atomic(path, "".join(lines))
    return len(lines)


class AppendLog:
    """An append-only JSON Lines file: :meth:`read` the complete lines, :meth:`append` more."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> list[dict[str, Any]]:
        """Complete lines that parse as objects; cuts a torn last line (a crash mid-write)."""
        if not self.path.exists():
            return []
        content = self.path.read_bytes()
        complete = content[: content.rfind(b"\n") + 1]
        if len(complete) != len(content):
            with self.path.open("r+b") as file:
                file.truncate(len(complete))
        rows = []
        for line in complete.decode("utf-8", errors="replace").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict):
                rows.append(row)
        return rows

    def append(self, rows: Iterable[Any]) -> None:
        """Append the rows and fsync, so they survive a crash right after."""
        text = "".join(dumps(row) + "\n" for row in rows)
        if not text:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
