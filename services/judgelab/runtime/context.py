"""What a unit runner gets: the experiment, the run directory, Redis, the services' addresses.

Runners run on a worker thread; `report` and `update_arm` only queue messages, which the
driver applies on its own thread (it owns the phase state).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from judgelab.phases import ArmProgress, Stage
from judgelab.runtime.progress import Unit
from judgelab.runtime.services import LocalServices
from judgelab.runtime.supervisor import Supervisor
from judgelab.spec import Experiment


@dataclass(frozen=True)
class StepReport:
    done: int
    total: int
    note: str = ""


Message = StepReport | ArmProgress


@dataclass
class UnitContext:
    """Everything a unit runner may use; `cancelled` is set when the run stops or a service dies."""

    experiment: Experiment
    experiment_path: Path  # RUN/experiment.yaml: the file the services read
    run_dir: Path
    redis_url: str
    services: LocalServices
    supervisor: Supervisor  # start helper processes (e.g. a learner); stopped with the run
    cancelled: threading.Event = field(default_factory=threading.Event)
    messages: queue.Queue[Message] = field(default_factory=queue.Queue)

    def address(self, service: str) -> str:
        """gRPC address (host:port) of a running service: "annotator", "judge-pool", "rollout"."""
        return self.services.address(service)

    def unit_dir(self, unit: Unit) -> Path:
        """A directory for the unit's outputs: RUN/<stage>/<unit>/ (created)."""
        path = self.run_dir / unit.stage.value / unit.name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def report(self, done: int, total: int, note: str = "") -> None:
        """Progress inside the unit (steps, items), shown as a bar or a line."""
        self.messages.put(StepReport(done, total, note))

    def update_arm(self, progress: ArmProgress) -> None:
        """Latest numbers of a policy arm (kept in the run state, shown by `judgelab status`)."""
        self.messages.put(progress)


UnitRunner = Callable[[UnitContext, Unit], None]
Runners = Mapping[Stage, UnitRunner]
