"""State shared by the training loop and the gRPC servicer (thread-safe).

The loop publishes its state here after every step; the servicer's Checkpoint and Stop calls
leave requests here that the loop serves between steps, and wait for the answer.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field


class LearnerPhaseName:
    STARTING = "starting"
    WAITING = "waiting"
    TRAINING = "training"
    CHECKPOINTING = "checkpointing"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"


@dataclass
class LearnerState:
    step: int = 0
    total_steps: int = 0
    phase: str = LearnerPhaseName.STARTING
    policy_version: int = 0
    losses: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    last_step_at: float | None = None  # Unix seconds
    last_checkpoint: str = ""


@dataclass
class _CheckpointRequest:
    tag: str
    done: threading.Event = field(default_factory=threading.Event)
    path: str = ""
    step: int = 0
    error: str = ""


class LearnerControl:
    def __init__(self, total_steps: int = 0) -> None:
        self._lock = threading.Lock()
        self._state = LearnerState(total_steps=total_steps)
        self._requests: list[_CheckpointRequest] = []
        self._stop = threading.Event()
        self._stopped = threading.Event()
        self.stop_reason = ""
        self.checkpoint_on_stop = False
        self.stop_checkpoint_path = ""

    # -- the loop's side ---------------------------------------------------------------------
    def update(self, **changes: object) -> None:
        with self._lock:
            for name, value in changes.items():
                setattr(self._state, name, value)

    def take_checkpoint_requests(self) -> list[_CheckpointRequest]:
        with self._lock:
            requests, self._requests = self._requests, []
        return requests

    @staticmethod
    def answer(request: _CheckpointRequest, path: str, step: int, error: str = "") -> None:
        request.path, request.step, request.error = path, step, error
        request.done.set()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    def mark_stopped(self, phase: str = LearnerPhaseName.STOPPED) -> None:
        self.update(phase=phase)
        for request in self.take_checkpoint_requests():
            self.answer(request, "", self.state().step, "the learner stopped")
        self._stopped.set()

    # -- the servicer's side -----------------------------------------------------------------
    def state(self) -> LearnerState:
        with self._lock:
            s = self._state
            return LearnerState(
                s.step,
                s.total_steps,
                s.phase,
                s.policy_version,
                dict(s.losses),
                dict(s.metrics),
                s.last_step_at,
                s.last_checkpoint,
            )

    def request_checkpoint(self, tag: str, timeout_s: float | None) -> tuple[str, int]:
        """Ask for a checkpoint and wait for it: (path, step). TimeoutError / RuntimeError."""
        request = _CheckpointRequest(tag)
        with self._lock:
            if self._stopped.is_set():
                raise RuntimeError("the learner has stopped")
            self._requests.append(request)
        if not request.done.wait(timeout_s):
            raise TimeoutError("the checkpoint did not finish in time")
        if request.error:
            raise RuntimeError(request.error)
        return request.path, request.step

    def request_stop(self, reason: str, checkpoint_first: bool, timeout_s: float | None) -> None:
        """Ask the loop to stop after the step in progress and wait until it has."""
        self.ask_stop(reason, checkpoint_first)
        if not self._stopped.wait(timeout_s):
            raise TimeoutError("the learner did not stop in time")

    def ask_stop(self, reason: str, checkpoint_first: bool = False) -> None:
        """Ask the loop to stop after the step in progress (the first reason stays)."""
        with self._lock:
            if not self._stop.is_set():
                self.stop_reason = reason
                self.checkpoint_on_stop = checkpoint_first
                self._stop.set()

    def wait_stopped(self, timeout_s: float | None = None) -> bool:
        return self._stopped.wait(timeout_s)


def now() -> float:
    return time.time()
