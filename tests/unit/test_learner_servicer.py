"""gRPC Learner (Status, Checkpoint, Stop) over a LearnerControl served by a fake loop thread."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import grpc
import pytest

from judgelab.api.v1 import learner_pb2, learner_pb2_grpc
from judgelab.learner.control import LearnerControl, LearnerPhaseName
from judgelab.learner.evaluation import HackingTracker
from judgelab.learner.servicer import SERVICE_NAME, LearnerServicer
from judgelab.serving.server import GrpcServer, ServiceBinding


def fake_loop(control: LearnerControl) -> None:
    """Serves checkpoint requests until stopped, as LearnerLoop does between steps."""
    step = 3
    control.update(
        step=step,
        policy_version=step,
        phase=LearnerPhaseName.WAITING,
        losses={"total": 0.5},
        metrics={"kl": 0.01},
        last_step_at=1.7e9,
    )
    while not control.stop_requested:
        for request in control.take_checkpoint_requests():
            path = f"/run/checkpoints/step-{step}{'-' + request.tag if request.tag else ''}"
            control.update(last_checkpoint=path)
            control.answer(request, path, step)
        threading.Event().wait(0.01)
    if control.checkpoint_on_stop:
        control.update(last_checkpoint="/run/checkpoints/step-3")
    control.mark_stopped()


@pytest.fixture
def stub() -> Iterator[learner_pb2_grpc.LearnerStub]:
    control = LearnerControl(total_steps=8)
    thread = threading.Thread(target=fake_loop, args=(control,), daemon=True)
    thread.start()
    binding = ServiceBinding(
        LearnerServicer(control, "tiny", "/run/policy/a"),
        learner_pb2_grpc.add_LearnerServicer_to_server,
        SERVICE_NAME,
    )
    server = GrpcServer([binding]).start()
    with grpc.insecure_channel(server.address) as channel:
        yield learner_pb2_grpc.LearnerStub(channel)
    server.stop(1.0)


def test_status_checkpoint_and_idempotent_stop(stub: learner_pb2_grpc.LearnerStub) -> None:
    threading.Event().wait(0.05)
    status = stub.Status(learner_pb2.LearnerStatusRequest(), timeout=5)
    assert (status.step, status.total_steps) == (3, 8)
    assert status.phase == learner_pb2.LEARNER_PHASE_WAITING
    assert status.policy.version == 3 and status.policy.weights_uri == "file:///run/policy/a/v3"
    assert status.losses["total"] == 0.5 and status.last_step_at.seconds == 1_700_000_000
    done = stub.Checkpoint(learner_pb2.CheckpointRequest(tag="eval"), timeout=5)
    assert (done.path, done.step) == ("/run/checkpoints/step-3-eval", 3)
    first = stub.Stop(learner_pb2.StopRequest(reason="test", checkpoint_first=True), timeout=5)
    again = stub.Stop(learner_pb2.StopRequest(reason="again"), timeout=5)
    assert first == again and first.step == 3 and first.checkpoint_path.endswith("step-3")
    stopped = stub.Status(learner_pb2.LearnerStatusRequest(), timeout=5)
    assert stopped.phase == learner_pb2.LEARNER_PHASE_STOPPED
    with pytest.raises(grpc.RpcError) as failed:
        stub.Checkpoint(learner_pb2.CheckpointRequest(), timeout=5)
    assert failed.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_hacking_tracker_flags_rising_proxy_with_falling_gold() -> None:
    tracker = HackingTracker(margin=0.1)
    assert tracker.update(4, proxy=0.5, gold=0.6)["hacking_detected"] == 0
    assert tracker.update(8, proxy=0.6, gold=0.55)["hacking_detected"] == 0  # within the margin
    flagged = tracker.update(12, proxy=0.7, gold=0.45)
    assert flagged["hacking_detected"] == 1 and flagged["hacking_detected_at"] == 12
    assert flagged["best_gold_step"] == 4 and flagged["hacking_gap"] == pytest.approx(0.15)


def test_the_charts_stage_and_unit_flags_select_the_phase_and_arm() -> None:
    from judgelab.learner.main import parse_args

    args = parse_args(["e.yaml", "--stage=train-judges", "--unit=plain", "--metrics-port=9090"])
    assert (args.phase, args.arm, args.metrics_port) == ("train-judges", "plain", 9090)
    assert parse_args(["e.yaml", "--phase", "train-policy", "--arm", "a"]).arm == "a"
