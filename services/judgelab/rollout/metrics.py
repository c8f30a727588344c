"""The rollout generator's own metrics, on the registry of its :class:`ServiceMetrics`.

Fixed labels: ``experiment``, ``service`` and ``arm`` (empty for ad-hoc Generate calls).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from judgelab.serving.metrics import LATENCY_BUCKETS, ServiceMetrics

SERVICE = "rollout-generator"


class RolloutMetrics:
    """Rollouts produced and dropped, tokens, generation time, the loaded policy version."""

    def __init__(self, service: ServiceMetrics | None = None) -> None:
        self.service = service or ServiceMetrics(SERVICE)
        labels = ["experiment", "service", "arm"]
        r = self.service.registry
        self.rollouts = Counter("judgelab_rollouts", "Completions sampled.", labels, registry=r)
        self.dropped_stale = Counter(
            "judgelab_rollouts_dropped_stale",
            "Completions dropped because their policy version fell more than max_staleness "
            "versions behind the latest published one before they were pushed.",
            labels,
            registry=r,
        )
        self.tokens_out = Counter(
            "judgelab_rollout_tokens_out", "Completion tokens sampled.", labels, registry=r
        )
        self.generate_seconds = Histogram(
            "judgelab_rollout_generate_seconds",
            "Model time per generation batch.",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.policy_version = Gauge(
            "judgelab_policy_version",
            "The policy version the generator samples from.",
            labels,
            registry=r,
        )
        self.policy_loads = Counter(
            "judgelab_policy_loads", "New policy versions loaded.", labels, registry=r
        )
        self.policy_load_seconds = Histogram(
            "judgelab_policy_load_seconds",
            "Time to load a new policy version.",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )

    def labels(self, arm: str = "") -> dict[str, str]:
        return self.service.labels(arm=arm)

    def record_batch(self, arm: str, rollouts: int, tokens: int, seconds: float) -> None:
        labels = self.labels(arm)
        self.rollouts.labels(**labels).inc(rollouts)
        self.tokens_out.labels(**labels).inc(tokens)
        self.generate_seconds.labels(**labels).observe(seconds)

    def record_stale(self, arm: str, dropped: int) -> None:
        self.dropped_stale.labels(**self.labels(arm)).inc(dropped)

    def record_load(self, arm: str, version: int, seconds: float) -> None:
        labels = self.labels(arm)
        self.policy_version.labels(**labels).set(version)
        self.policy_loads.labels(**labels).inc()
        self.policy_load_seconds.labels(**labels).observe(seconds)
