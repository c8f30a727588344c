"""Operator settings, from the environment of its Deployment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from judgelab.phases import RetryPolicy


@dataclass(frozen=True)
class OperatorConfig:
    """How the operator runs (all optional; the defaults suit a cluster)."""

    chart: str = "/charts/judgelab-experiment"
    helm: str = "helm"
    namespaces: tuple[str, ...] = ()
    reconcile_interval_s: float = 5.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    peering: str = "judgelab"
    liveness: str = "http://0.0.0.0:8080/healthz"
    # Values files under the operator's own values (cluster set-up: images, Redis, vLLM).
    base_values: tuple[str, ...] = ()
    log_level: str = "info"

    @property
    def clusterwide(self) -> bool:
        """No namespaces listed: watch Experiments in all of them."""
        return not self.namespaces

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> OperatorConfig:
        """`JUDGELAB_*` variables; unset ones keep their defaults."""
        env = os.environ if env is None else env
        base = cls()
        retry = RetryPolicy(
            max_attempts=int(env.get("JUDGELAB_RETRY_ATTEMPTS", base.retry.max_attempts)),
            initial_delay_s=float(env.get("JUDGELAB_RETRY_DELAY_S", base.retry.initial_delay_s)),
            max_delay_s=float(env.get("JUDGELAB_RETRY_MAX_DELAY_S", base.retry.max_delay_s)),
        )
        names = env.get("JUDGELAB_NAMESPACES", "")
        files = env.get("JUDGELAB_BASE_VALUES", "")
        return cls(
            chart=env.get("JUDGELAB_CHART", base.chart),
            helm=env.get("JUDGELAB_HELM", base.helm),
            namespaces=tuple(n.strip() for n in names.split(",") if n.strip()),
            reconcile_interval_s=float(
                env.get("JUDGELAB_RECONCILE_INTERVAL_S", base.reconcile_interval_s)
            ),
            retry=retry,
            peering=env.get("JUDGELAB_PEERING", base.peering),
            liveness=env.get("JUDGELAB_LIVENESS", base.liveness),
            base_values=tuple(f.strip() for f in files.split(",") if f.strip()),
            log_level=env.get("JUDGELAB_LOG_LEVEL", base.log_level),
        )
