"""The learner's per-step time split (generate / judge / train / wait) in its Prometheus series."""

from __future__ import annotations

from judgelab.learner.metrics import LearnerMetrics
from judgelab.learner.steplog import StepLog, StepTimes

LABELS = {"experiment": "demo", "arm": "arm-a"}


def step_log(times: StepTimes) -> StepLog:
    numbers = dict.fromkeys(
        (
            "loss reward_mean reward_std kl entropy completion_length_mean clip_fraction clip_low "
            "clip_high ratio_mean grad_norm learning_rate staleness_mean"
        ).split(),
        0.0,
    )
    return StepLog(
        step=1,
        policy_version=1,
        staleness_max=0,
        groups=2,
        completions=4,
        tokens=12,
        times=times,
        **numbers,
    )


def test_each_known_part_of_a_step_is_observed() -> None:
    metrics = LearnerMetrics("demo")
    metrics.record_step("arm-a", step_log(StepTimes(generate=1.5, judge=None, train=2.0, wait=3.0)))
    registry = metrics.service.registry

    def observed(name: str) -> tuple[float | None, float | None]:
        count = registry.get_sample_value(f"judgelab_learner_{name}_seconds_count", LABELS)
        return count, registry.get_sample_value(f"judgelab_learner_{name}_seconds_sum", LABELS)

    assert observed("generate") == (1.0, 1.5)
    assert observed("wait") == (1.0, 3.0)
    assert observed("step") == (1.0, 2.0)  # the training part, as before
    assert observed("judge") == (None, None)  # unknown: not observed as 0


def test_the_step_log_line_carries_the_generate_time() -> None:
    line = step_log(StepTimes(generate=1.5, judge=0.25, train=2.0, wait=3.0)).to_json()
    assert line["times"] == {"generate": 1.5, "judge": 0.25, "train": 2.0, "wait": 3.0}
