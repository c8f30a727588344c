"""A run directory: the phase state (atomic JSON), the phase log (JSON lines), the experiment.

    RUN/state.json         PhaseState.to_dict(), replaced atomically after every transition
    RUN/phase-log.jsonl    one line per phase-machine record (unit launched/succeeded/...)
    RUN/experiment.yaml    the experiment the run was started (or last resumed) with
    RUN/logs/, RUN/redis/  service logs, the local Redis' append-only file

The state is written before the log lines; a crash in between loses no transition, and the
missing lines are appended from the state on the next load.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from judgelab.atomic_files import write_bytes_atomic
from judgelab.phases import PhaseState, Record
from judgelab.runtime.errors import NotARunDir

STATE_FILE = "state.json"
PHASE_LOG = "phase-log.jsonl"
EXPERIMENT_FILE = "experiment.yaml"


class RunStore:
    """Reads and writes one run directory."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.state_path = run_dir / STATE_FILE
        self.log_path = run_dir / PHASE_LOG
        self.experiment_path = run_dir / EXPERIMENT_FILE
        self.logs_dir = run_dir / "logs"
        self.redis_dir = run_dir / "redis"
        self._logged: int | None = None  # phase-log lines on disk, counted on first write

    def exists(self) -> bool:
        return self.state_path.is_file()

    def keep_experiment(self, source: Path) -> None:
        """Copy the experiment file into the run (the services read this copy)."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if source.resolve() != self.experiment_path.resolve():
            write_bytes_atomic(self.experiment_path, source.read_bytes())

    def save(self, state: PhaseState) -> None:
        """Replace state.json, then append the records the phase log does not have yet."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        text = json.dumps(state.to_dict(), indent=1, sort_keys=True) + "\n"
        write_bytes_atomic(self.state_path, text.encode())
        if self._logged is None:
            self._logged = _count_lines(self.log_path)
        self._append_records(state.log[self._logged :])

    def load(self) -> PhaseState:
        """The saved state (NotARunDir if there is none or it is unreadable); writes nothing."""
        if not self.exists():
            raise NotARunDir(
                f"{self.run_dir} is not a judgelab run: it has no {STATE_FILE} "
                "(give the directory a run was started in)"
            )
        try:
            raw = json.loads(self.state_path.read_text(encoding="utf-8"))
            state = PhaseState.from_dict(raw)
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise NotARunDir(f"{self.state_path} is not a readable run state: {err}") from err
        return state

    def sync_log(self, state: PhaseState) -> None:
        """Before writing again: append the records a crash kept out of the phase log."""
        self._logged = _count_lines(self.log_path)
        self._append_records(state.log[self._logged :])

    def phase_log(self) -> list[dict[str, Any]]:
        """The phase log's entries, oldest first."""
        if not self.log_path.exists():
            return []
        lines = self.log_path.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def _append_records(self, records: tuple[Record, ...]) -> None:
        if not records:
            return
        with self.log_path.open("a", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(_record_dict(record), sort_keys=True) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        self._logged = (self._logged or 0) + len(records)


def _record_dict(record: Record) -> dict[str, Any]:
    return {
        "at": record.at.isoformat(),
        "event": record.reason,
        "stage": record.stage,
        "unit": record.unit,
        "attempt": record.attempt,
        "message": record.message,
        "warning": record.warning,
    }


def _count_lines(path: Path) -> int:
    if not path.exists():
        return 0
    return sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
