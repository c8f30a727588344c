"""gRPC ``judgelab.v1.Learner`` over a :class:`LearnerControl` (observe, checkpoint, stop)."""

from __future__ import annotations

import threading
from typing import Any

import grpc
from google.protobuf import timestamp_pb2

from judgelab.api.v1 import common_pb2, learner_pb2, learner_pb2_grpc
from judgelab.learner.control import LearnerControl, LearnerPhaseName
from judgelab.serving.errors import DeadlineExceeded, FailedPrecondition, Problem

SERVICE_NAME = learner_pb2.DESCRIPTOR.services_by_name["Learner"].full_name
_PHASES = {
    LearnerPhaseName.STARTING: learner_pb2.LEARNER_PHASE_STARTING,
    LearnerPhaseName.WAITING: learner_pb2.LEARNER_PHASE_WAITING,
    LearnerPhaseName.TRAINING: learner_pb2.LEARNER_PHASE_TRAINING,
    LearnerPhaseName.CHECKPOINTING: learner_pb2.LEARNER_PHASE_CHECKPOINTING,
    LearnerPhaseName.STOPPING: learner_pb2.LEARNER_PHASE_STOPPING,
    LearnerPhaseName.STOPPED: learner_pb2.LEARNER_PHASE_STOPPED,
    LearnerPhaseName.FAILED: learner_pb2.LEARNER_PHASE_FAILED,
}


class LearnerServicer(learner_pb2_grpc.LearnerServicer):
    def __init__(self, control: LearnerControl, base_model: str = "", policy_root: str = ""):
        self.control = control
        self.base_model = base_model
        self.policy_root = policy_root
        self._stop_lock = threading.Lock()

    def Status(  # noqa: N802 - gRPC method name
        self, request: learner_pb2.LearnerStatusRequest, context: grpc.ServicerContext
    ) -> learner_pb2.LearnerStatus:
        state = self.control.state()
        status = learner_pb2.LearnerStatus(
            step=state.step,
            total_steps=state.total_steps,
            phase=_PHASES.get(state.phase, learner_pb2.LEARNER_PHASE_UNSPECIFIED),
            objective=learner_pb2.OBJECTIVE_GRPO,
            policy=self._policy(state.policy_version),
            losses=state.losses,
            metrics=state.metrics,
            last_checkpoint_path=state.last_checkpoint,
        )
        if state.last_step_at is not None:
            stamp = timestamp_pb2.Timestamp()
            stamp.FromNanoseconds(int(state.last_step_at * 1e9))
            status.last_step_at.CopyFrom(stamp)
        return status

    def Checkpoint(  # noqa: N802
        self, request: learner_pb2.CheckpointRequest, context: grpc.ServicerContext
    ) -> learner_pb2.CheckpointResponse:
        try:
            path, step = self.control.request_checkpoint(request.tag, _remaining(context))
        except TimeoutError as exc:
            raise DeadlineExceeded(Problem("", "DEADLINE", str(exc))) from exc
        except RuntimeError as exc:
            raise FailedPrecondition(Problem("", "STOPPED", str(exc))) from exc
        return learner_pb2.CheckpointResponse(path=path, step=step)

    def Stop(  # noqa: N802
        self, request: learner_pb2.StopRequest, context: grpc.ServicerContext
    ) -> learner_pb2.StopResponse:
        with self._stop_lock:
            try:
                self.control.request_stop(
                    request.reason, request.checkpoint_first, _remaining(context)
                )
            except TimeoutError as exc:
                raise DeadlineExceeded(Problem("", "DEADLINE", str(exc))) from exc
        state = self.control.state()
        path = state.last_checkpoint if self.control.checkpoint_on_stop else ""
        return learner_pb2.StopResponse(step=state.step, checkpoint_path=path)

    def _policy(self, version: int) -> Any:
        uri = f"file://{self.policy_root}/v{version}" if version and self.policy_root else ""
        return common_pb2.PolicyVersion(
            version=version, weights_uri=uri, base_model=self.base_model, step=version
        )


def _remaining(context: grpc.ServicerContext) -> float | None:
    remaining = context.time_remaining()
    return None if remaining is None else max(float(remaining), 0.0)
