"""The learner's Prometheus series (labels ``experiment``, ``arm``), next to the common ones."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from judgelab.learner.steplog import StepLog
from judgelab.serving.metrics import LATENCY_BUCKETS, ServiceMetrics

SERVICE = "learner"


class LearnerMetrics:
    """Gauges the Grafana dashboard and alert rules read, on the service's registry."""

    def __init__(self, experiment: str, service: ServiceMetrics | None = None) -> None:
        self.service = service or ServiceMetrics(SERVICE, experiment=experiment)
        self.experiment = experiment
        r = self.service.registry
        arm = ["experiment", "arm"]
        self.step = Gauge("judgelab_learner_step", "Optimiser steps taken.", arm, registry=r)
        self.proxy_reward = Gauge(
            "judgelab_learner_proxy_reward",
            "Mean proxy-judge reward of the last step's rollouts.",
            arm,
            registry=r,
        )
        self.gold_reward = Gauge(
            "judgelab_learner_gold_reward",
            "Mean gold reward at the last in-loop evaluation.",
            arm,
            registry=r,
        )
        self.kl = Gauge(
            "judgelab_learner_kl", "KL(policy || initial policy) estimate (k3).", arm, registry=r
        )
        self.loss = Gauge("judgelab_learner_loss", "GRPO loss of the last step.", arm, registry=r)
        self.entropy = Gauge(
            "judgelab_learner_entropy", "Mean token entropy of the last step.", arm, registry=r
        )
        self.clip_fraction = Gauge(
            "judgelab_learner_clip_fraction",
            "Share of tokens whose ratio was clipped.",
            arm,
            registry=r,
        )
        self.staleness = Gauge(
            "judgelab_learner_staleness_versions",
            "Mean policy versions the last step's rollouts lagged.",
            arm,
            registry=r,
        )
        self.hacking_gap = Gauge(
            "judgelab_hacking_gap",
            "Best gold reward so far minus the current one (normalised).",
            arm,
            registry=r,
        )
        self.hacking_detected = Gauge(
            "judgelab_hacking_detected",
            "1 once proxy rose while gold fell past the margin.",
            arm,
            registry=r,
        )
        self.dropped_stale = Counter(
            "judgelab_learner_dropped_stale",
            "Scored groups dropped as too stale (or from a lost future).",
            arm,
            registry=r,
        )
        self.lost_groups = Counter(
            "judgelab_learner_lost_groups",
            "Groups the learner waited for that were dead-lettered on the way (the arm fails).",
            arm,
            registry=r,
        )
        self.step_seconds = Histogram(
            "judgelab_learner_step_seconds",
            "Training time per step.",
            arm,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        # The rest of a step's time (StepTimes), one histogram per part like step_seconds.
        self.part_seconds = {
            part: Histogram(
                f"judgelab_learner_{part}_seconds",
                help_text,
                arm,
                buckets=LATENCY_BUCKETS,
                registry=r,
            )
            for part, help_text in (
                ("generate", "Slowest sampling batch of a step's groups (rollout generator)."),
                ("judge", "Slowest judgement of a step's groups (judge pool)."),
                ("wait", "Time a step waited for its groups."),
            )
        }

    def record_step(self, arm: str, log: StepLog) -> None:
        labels = {"experiment": self.experiment, "arm": arm}
        self.step.labels(**labels).set(log.step)
        self.proxy_reward.labels(**labels).set(log.reward_mean)
        self.kl.labels(**labels).set(log.kl)
        self.loss.labels(**labels).set(log.loss)
        self.entropy.labels(**labels).set(log.entropy)
        self.clip_fraction.labels(**labels).set(log.clip_fraction)
        self.staleness.labels(**labels).set(log.staleness_mean)
        self.step_seconds.labels(**labels).observe(log.times.train)
        parts = {"generate": log.times.generate, "judge": log.times.judge, "wait": log.times.wait}
        for part, seconds in parts.items():
            if seconds is not None:
                self.part_seconds[part].labels(**labels).observe(seconds)

    def record_evaluation(self, arm: str, evaluation: dict[str, object]) -> None:
        labels = {"experiment": self.experiment, "arm": arm}
        gauges = {
            "gold_reward": self.gold_reward,
            "hacking_gap": self.hacking_gap,
            "hacking_detected": self.hacking_detected,
        }
        for key, gauge in gauges.items():
            value = evaluation.get(key)
            if isinstance(value, int | float):
                gauge.labels(**labels).set(float(value))

    def record_lost(self, arm: str, count: int) -> None:
        self.lost_groups.labels(experiment=self.experiment, arm=arm).inc(count)

    def dropped(self, arm: str, count: int = 1) -> None:
        self.dropped_stale.labels(experiment=self.experiment, arm=arm).inc(count)
