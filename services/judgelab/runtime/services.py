"""The study's services as local processes: which command serves each, start on demand, restart.

The phase machine names services "annotator", "judge-pool" and "rollout"; locally each is
`judgelab serve <command> EXPERIMENT` and its log is RUN/logs/<command>.log.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from judgelab.phases.stages import ANNOTATOR, JUDGE_POOL, ROLLOUT
from judgelab.runtime.errors import ServiceFailed
from judgelab.runtime.supervisor import Child, Supervisor

SERVE_COMMANDS: dict[str, str] = {
    ANNOTATOR: "gold-annotator",
    JUDGE_POOL: "judge-pool",
    ROLLOUT: "rollout-generator",
}
SERVICE_GRACE_S = 10.0
ArgvFor = Callable[[str, Path, str], list[str]]  # (service, experiment file, redis URL) -> argv


def service_argv(service: str, experiment_path: Path, redis_url: str) -> list[str]:
    """The command that serves a phase-machine service on free loopback ports."""
    return [
        sys.executable, "-m", "judgelab.cli", "serve", SERVE_COMMANDS[service],
        str(experiment_path),
        "--host", "127.0.0.1", "--port", "0", "--metrics-port", "0",
        "--grace-s", f"{SERVICE_GRACE_S:g}", "--redis-url", redis_url,
    ]  # fmt: skip


class LocalServices:
    """Keeps the services a stage needs running; a crashed one is restarted a few times."""

    def __init__(
        self,
        supervisor: Supervisor,
        experiment_path: Path,
        redis_url: str,
        *,
        max_restarts: int = 2,
        on_event: Callable[[str], None] = lambda _: None,
        argv_for: ArgvFor | None = None,
    ) -> None:
        self.supervisor = supervisor
        self.experiment_path = experiment_path
        self.redis_url = redis_url
        self.max_restarts = max_restarts
        self.on_event = on_event
        self.argv_for = argv_for if argv_for is not None else service_argv
        self.restarts: dict[str, int] = {}
        self._started: set[str] = set()

    def child(self, service: str) -> Child | None:
        """The running process of a service (None if it is not up)."""
        name = SERVE_COMMANDS[service]
        return self.supervisor.get(name) if self.supervisor.running(name) else None

    def address(self, service: str) -> str:
        """gRPC address of a running service (KeyError if it is not up)."""
        child = self.child(service)
        if child is None:
            raise KeyError(f"{service} is not running")
        return child.address

    def crashed(self) -> list[str]:
        """Services that exited on their own since the last call (reported with their log)."""
        by_command = {command: service for service, command in SERVE_COMMANDS.items()}
        lost: list[str] = []
        for child in self.supervisor.crashed():
            if child.name not in by_command:
                continue
            service = by_command[child.name]
            code = child.process.returncode
            self.on_event(f"{child.failure(f'exited with code {code}')}")
            lost.append(service)
        return lost

    def ensure(self, services: Sequence[str]) -> list[str]:
        """Start those of `services` that are not running (together); returns the ones started."""
        missing = [service for service in services if self.child(service) is None]
        for service in missing:
            self._count_restart(service)
        commands: list[tuple[str, Sequence[str]]] = []
        for service in missing:
            command = SERVE_COMMANDS[service]
            self.on_event(f"starting {command} (log: {self.supervisor.log_dir / command}.log)")
            commands.append((command, self.argv_for(service, self.experiment_path, self.redis_url)))
            self._started.add(service)
        for child in self.supervisor.start_many(commands):
            self.on_event(f"{child.name} serving on {child.address} (pid {child.pid})")
        return missing

    def _count_restart(self, service: str) -> None:
        """Count a start of a service that ran before; too many and the study fails."""
        if service not in self._started:
            return
        count = self.restarts.get(service, 0) + 1
        if count > self.max_restarts:
            raise ServiceFailed(
                SERVE_COMMANDS[service],
                f"crashed more than {self.max_restarts} times; giving up",
                "",
                str(self.supervisor.log_dir / f"{SERVE_COMMANDS[service]}.log"),
            )
        self.restarts[service] = count
