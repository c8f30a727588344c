"""The arm's ``progress.json``: the last step the learner finished and every group it dropped.

The prompt feeder (``feeder``, run by the learner itself with ``--feed-prompts``, or by a caller
following this file) pushes the prompts of the next steps once a step is done, and one
replacement prompt per dropped group (it pushes exactly ``prompts_per_step`` prompts a step, so
a dropped group would otherwise leave the learner waiting forever). The local runtime reads the
step from it for progress. A drop is
written as it happens, before the group is acked, and the list is kept across restarts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from judgelab.learner import checkpoint

PROGRESS_FILE = "progress.json"


class ProgressFile:
    """Reads the file once (a previous life's drops) and rewrites it atomically on each change."""

    def __init__(self, arm_dir: Path, arm: str, total_steps: int) -> None:
        self.path = arm_dir / PROGRESS_FILE
        self.arm = arm
        self.total_steps = total_steps
        self.data = _read_json(self.path)
        self.dropped: list[str] = [str(g) for g in self.data.get("dropped", [])]
        self._dropped = set(self.dropped)

    def was_dropped(self, group_id: str) -> bool:
        return group_id in self._dropped

    def record_drop(self, group_id: str, version: int) -> None:
        self.dropped.append(group_id)
        self._dropped.add(group_id)
        if "step" not in self.data:  # no step finished yet: the feeder reads step 0
            self.data.update(self._step(version, version))
        self._write()

    def record_step(self, step: int, version: int) -> None:
        self.data.update(self._step(step, version))
        self._write()

    def _step(self, step: int, version: int) -> dict[str, Any]:
        return {"step": step, "total": self.total_steps, "arm": self.arm, "policy_version": version}

    def _write(self) -> None:
        self.data.update(dropped_stale=len(self.dropped), dropped=list(self.dropped))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        checkpoint.write_json_atomically(self.path, self.data)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
