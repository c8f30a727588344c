"""Labels and annotations shared with the experiment chart (the chart must set the labels)."""

from __future__ import annotations

EXPERIMENT = "judgelab.io/experiment"
STAGE = "judgelab.io/stage"
UNIT = "judgelab.io/unit"
ATTEMPT = "judgelab.io/attempt"
COMPONENT = "app.kubernetes.io/component"
# The chart's component label of each service Deployment, by the phase machine's service name.
SERVICE_COMPONENTS = {
    "annotator": "gold-annotator",
    "judge-pool": "judge-pool",
    "rollout": "rollout-generator",
}

ANNOTATION_PREFIX = "judgelab.io"
# On the Experiment: the phase machine's persisted state, and the opt-in to delete data.
STATE_ANNOTATION = "judgelab.io/phase-state"
DELETE_DATA_ANNOTATION = "judgelab.io/delete-data"
# On a policy-training Job: the learner's latest numbers as JSON (step, proxyReward, ...).
PROGRESS_ANNOTATION = "judgelab.io/progress"

FINALIZER = "judgelab.io/release"
RELEASE_READY = "ReleaseReady"
