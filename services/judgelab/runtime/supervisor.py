"""Starts and stops the runtime's child processes: one log each, ports from their announce line.

Stopping is always the same, whether the run finished, failed, was interrupted or the
interpreter is exiting: SIGTERM to every service's process group, SIGKILL after the grace,
descendants included; infrastructure (Redis) last, so services can still flush to it.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from judgelab.runtime.errors import ServiceFailed
from judgelab.runtime.processes import spawn, stop_trees
from judgelab.runtime.readiness import log_tail, wait_announce, wait_serving


@dataclass
class Child:
    """One supervised process."""

    name: str
    argv: tuple[str, ...]
    process: subprocess.Popen[bytes]
    log_path: Path
    log_start: int
    infrastructure: bool
    announced: dict[str, Any] = field(default_factory=dict)
    stopping: bool = False

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def address(self) -> str:
        """The gRPC address it announced ("" if it announced none)."""
        return str(self.announced.get("grpc", ""))

    def tail(self) -> str:
        """The end of what this start of the process wrote to its log."""
        return log_tail(self.log_path, self.log_start)

    def failure(self, problem: str) -> ServiceFailed:
        return ServiceFailed(self.name, problem, self.tail(), str(self.log_path))


class Supervisor:
    """``with Supervisor(run_dir / "logs") as sup: sup.start("judge-pool", argv)``."""

    def __init__(
        self,
        log_dir: Path,
        *,
        grace_s: float = 15.0,
        start_timeout_s: float = 600.0,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.log_dir = log_dir
        self.grace_s = grace_s
        self.start_timeout_s = start_timeout_s
        self.env = {**(env if env is not None else os.environ), "PYTHONUNBUFFERED": "1"}
        self._children: dict[str, Child] = {}
        self._lock = threading.RLock()
        self._closed = False
        atexit.register(self.stop_all)

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        announce: bool = True,
        health: bool = True,
        infrastructure: bool = False,
        cwd: Path | None = None,
    ) -> Child:
        """Start `name`; with `announce`, wait for its JSON line; with `health`, for SERVING."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the supervisor is stopped")
            old = self._children.get(name)
            if old is not None and old.process.poll() is None:
                raise ValueError(f"{name} is already running (pid {old.pid})")
            child = self._spawn(name, argv, infrastructure, cwd)
            self._children[name] = child
        try:
            self._wait_ready(child, announce, health and announce)
        except BaseException:
            self.stop(name)
            raise
        return child

    def start_many(self, commands: Sequence[tuple[str, Sequence[str]]]) -> list[Child]:
        """Start several announcing, health-checked services at once, then wait for each.

        Their start-ups (imports, model loads) overlap; if one fails, all of them are stopped.
        """
        with self._lock:
            if self._closed:
                raise RuntimeError("the supervisor is stopped")
            for name, _ in commands:
                old = self._children.get(name)
                if old is not None and old.process.poll() is None:
                    raise ValueError(f"{name} is already running (pid {old.pid})")
            children = [self._spawn(name, argv, False, None) for name, argv in commands]
            self._children.update((child.name, child) for child in children)
        try:
            for child in children:
                self._wait_ready(child, True, True)
        except BaseException:
            for child in children:
                self.stop(child.name)
            raise
        return children

    def get(self, name: str) -> Child | None:
        with self._lock:
            return self._children.get(name)

    def running(self, name: str) -> bool:
        child = self.get(name)
        return child is not None and not child.stopping and child.process.poll() is None

    def crashed(self) -> list[Child]:
        """Children that exited without being asked to (each is reported once, then dropped)."""
        with self._lock:
            dead = [
                c
                for c in self._children.values()
                if not c.stopping and c.process.poll() is not None
            ]
            for child in dead:
                del self._children[child.name]
        return dead

    def stop(self, name: str) -> None:
        with self._lock:
            child = self._children.pop(name, None)
        if child is not None:
            child.stopping = True
            stop_trees([child.process], self.grace_s)

    def stop_all(self) -> None:
        """Stop every child (services together, then infrastructure). Safe to call twice."""
        with self._lock:
            self._closed = True
            children = list(self._children.values())
        for child in children:
            child.stopping = True
        for infrastructure in (False, True):
            group = [c.process for c in children if c.infrastructure is infrastructure]
            if group:
                stop_trees(group, self.grace_s)
        # Forgotten only once stopped: if this is cut short, the atexit call stops the rest.
        with self._lock:
            for child in children:
                if self._children.get(child.name) is child:
                    del self._children[child.name]

    def close(self) -> None:
        self.stop_all()
        atexit.unregister(self.stop_all)

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _spawn(
        self, name: str, argv: Sequence[str], infrastructure: bool, cwd: Path | None
    ) -> Child:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        path = self.log_dir / f"{name}.log"
        with path.open("ab") as log:
            stamp = datetime.now(UTC).isoformat(timespec="seconds")
            log.write(f"=== {stamp} judgelab runtime starts: {' '.join(argv)}\n".encode())
            log.flush()
            start = log.tell()
            process = spawn(argv, log, self.env, cwd)
        return Child(name, tuple(argv), process, path, start, infrastructure)

    def _wait_ready(self, child: Child, announce: bool, health: bool) -> None:
        began = time.monotonic()
        if announce:
            found = wait_announce(
                child.process, child.log_path, child.log_start, self.start_timeout_s
            )
            if isinstance(found, str):
                raise child.failure(found)
            child.announced = found
        if health:
            if not child.address:
                raise child.failure(f"announced no gRPC address: {child.announced}")
            left = max(self.start_timeout_s - (time.monotonic() - began), 5.0)
            problem = wait_serving(child.process, child.address, left, self.env)
            if problem is not None:
                raise child.failure(problem)
