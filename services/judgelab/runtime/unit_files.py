"""What a unit running in a child process tells `judgelab run`: three small files in its unit
directory, each replaced atomically, so the driver never reads half a message.

- ``unit-progress.json``: the latest progress report ({done, total, note});
- ``unit-arm.json``: the latest numbers of a policy arm (an `ArmProgress`);
- ``unit-failure.txt``: why the unit failed, in one line (written just before a non-zero exit).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from judgelab.atomic_files import write_text_atomic
from judgelab.phases import ArmProgress
from judgelab.runtime.context import Message, StepReport

PROGRESS_FILE = "unit-progress.json"
ARM_FILE = "unit-arm.json"
FAILURE_FILE = "unit-failure.txt"


class UnitFiles:
    """The child writes with `write`/`fail`; the driver polls with `new_messages`/`failure`."""

    def __init__(self, unit_dir: Path) -> None:
        self.unit_dir = unit_dir
        self._seen: dict[str, str] = {}

    def clear(self) -> None:
        """Forget a previous attempt's files (before the child starts)."""
        for name in (PROGRESS_FILE, ARM_FILE, FAILURE_FILE):
            (self.unit_dir / name).unlink(missing_ok=True)
        self._seen.clear()

    def write(self, message: Message) -> None:
        name = PROGRESS_FILE if isinstance(message, StepReport) else ARM_FILE
        write_text_atomic(self.unit_dir / name, json.dumps(dataclasses.asdict(message)) + "\n")

    def fail(self, reason: str) -> None:
        write_text_atomic(self.unit_dir / FAILURE_FILE, reason.strip() + "\n")

    def failure(self) -> str:
        """The child's reason for failing ("" if it wrote none)."""
        try:
            return (self.unit_dir / FAILURE_FILE).read_text(encoding="utf-8").strip()
        except OSError:
            return ""

    def new_messages(self) -> list[Message]:
        """The progress report and arm numbers that changed since the last call."""
        messages: list[Message] = []
        progress = self._changed(PROGRESS_FILE)
        if progress is not None:
            messages.append(StepReport(int(progress["done"]), int(progress["total"]),
                                       str(progress.get("note", ""))))  # fmt: skip
        arm = self._changed(ARM_FILE)
        if arm is not None:
            messages.append(ArmProgress(**arm))
        return messages

    def _changed(self, name: str) -> dict[str, Any] | None:
        try:
            text = (self.unit_dir / name).read_text(encoding="utf-8")
        except OSError:
            return None
        if self._seen.get(name) == text:
            return None
        self._seen[name] = text
        try:
            data = json.loads(text)
        except ValueError:
            return None
        return data if isinstance(data, dict) else None
