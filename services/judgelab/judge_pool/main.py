"""`judgelab serve judge-pool`: the pool's gRPC server (and, with Redis, its stream worker)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from judgelab.judge_pool.server import build_judge_pool, start_judge_pool_server
from judgelab.serving.lifecycle import announce, run_until_signalled
from judgelab.serving.metrics import ServiceMetrics
from judgelab.spec.experiment import Experiment

log = logging.getLogger(__name__)

SERVICE = "judge-pool"


@dataclass(frozen=True)
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 0
    metrics_port: int | None = 0  # None: no /metrics endpoint
    judges: frozenset[str] | None = None  # None: every judge of the experiment
    grace_s: float = 30.0


def serve_judge_pool(experiment: Experiment, options: ServeOptions) -> None:
    metrics = ServiceMetrics(SERVICE, experiment=experiment.metadata.name)
    only = set(options.judges) if options.judges is not None else None
    pool = build_judge_pool(experiment, metrics=metrics, only=only)
    server = start_judge_pool_server(pool, host=options.host, port=options.port)
    metrics_port = (
        metrics.serve_http(options.metrics_port, options.host)
        if options.metrics_port is not None else None
    )
    announce({"service": SERVICE, "grpc": server.address, "metrics": metrics_port,
              "judges": [j.name for j in pool.judges]})
    run_until_signalled([lambda: server.stop(options.grace_s), pool.close])
