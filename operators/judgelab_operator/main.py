"""Entry point: `python -m judgelab_operator` (settings from `JUDGELAB_*` variables).

Settings: `JUDGELAB_CHART` (the experiment chart, default /charts/judgelab-experiment),
`JUDGELAB_BASE_VALUES` (comma-separated values files under the operator's own values),
`JUDGELAB_NAMESPACES` (comma-separated; empty: all), `JUDGELAB_LOG_LEVEL` (debug, info,
warning; logs are JSON lines), `JUDGELAB_HELM`, `JUDGELAB_RETRY_*`.
Liveness/readiness: kopf's endpoint at `JUDGELAB_LIVENESS` (default
http://0.0.0.0:8080/healthz). More than one replica: kopf peering named `JUDGELAB_PEERING`
(default `judgelab`; the KopfPeering CRDs must be installed); empty runs standalone.
"""

from __future__ import annotations

import kopf

from judgelab_operator.config import OperatorConfig
from judgelab_operator.handlers import register
from judgelab_operator.helm import HelmCli
from judgelab_operator.operator import ExperimentOperator


def build_registry(operator: ExperimentOperator) -> kopf.OperatorRegistry:
    """A registry holding only this operator's handlers."""
    registry = kopf.OperatorRegistry()
    register(registry, operator)
    return registry


def main() -> None:
    """Run the operator until SIGTERM."""
    config = OperatorConfig.from_env()
    kopf.configure(
        debug=config.log_level == "debug",
        quiet=config.log_level == "warning",
        log_format=kopf.LogFormat.JSON,
    )
    helm = HelmCli(config.chart, helm=config.helm, base_values=config.base_values)
    operator = ExperimentOperator(config, helm)
    kopf.run(
        registry=build_registry(operator),
        clusterwide=config.clusterwide,
        namespaces=config.namespaces,
        liveness_endpoint=config.liveness or None,
        standalone=not config.peering,
        peering_name=config.peering or None,
    )


if __name__ == "__main__":
    main()
