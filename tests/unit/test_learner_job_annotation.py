"""The learner's progress annotation on its Job, read back by the operator's own parser."""

from __future__ import annotations

import math
from typing import Any

from judgelab.learner.job_annotation import JobAnnotator
from judgelab_operator.observations import observe_job


def _job(annotations: dict[str, str]) -> dict[str, Any]:
    labels = {
        "judgelab.io/experiment": "demo",
        "judgelab.io/stage": "train-policy",
        "judgelab.io/unit": "plain",
        "judgelab.io/attempt": "1",
    }
    return {
        "metadata": {
            "name": "demo-train-policy-plain-1",
            "labels": labels,
            "annotations": annotations,
        },
        "status": {},
    }


def test_the_operator_reads_what_the_learner_writes() -> None:
    patches: list[dict[str, Any]] = []
    annotator = JobAnnotator(patches.append, "judgelab.io/progress")
    annotator.publish(7, 6.5, 4.25, 0.12, True)
    annotations = patches[-1]["metadata"]["annotations"]
    observed = observe_job(_job(annotations))
    assert observed is not None and observed.progress is not None
    progress = observed.progress
    assert (progress.step, progress.proxy_reward, progress.gold_reward) == (7, 6.5, 4.25)
    assert progress.kl is not None and math.isclose(progress.kl, 0.12) and progress.hacking


def test_missing_numbers_are_null_and_a_failed_patch_does_not_raise() -> None:
    def failing(_: dict[str, Any]) -> None:
        raise ConnectionError("api server away")

    JobAnnotator(failing, "judgelab.io/progress").publish(1, float("nan"), None, 0.0, False)
    patches: list[dict[str, Any]] = []
    JobAnnotator(patches.append, "judgelab.io/progress").publish(1, float("nan"), None, 0.0, False)
    observed = observe_job(_job(patches[-1]["metadata"]["annotations"]))
    assert observed is not None and observed.progress is not None
    assert observed.progress.proxy_reward is None and observed.progress.gold_reward is None


def test_outside_a_job_there_is_no_annotator() -> None:
    assert JobAnnotator.from_env({}) is None
