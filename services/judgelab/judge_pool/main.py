"""`judgelab serve judge-pool`: the pool's gRPC server (and, with Redis, its stream worker)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from judgelab.judge_pool.pool import JudgePool
from judgelab.judge_pool.server import build_judge_pool, start_judge_pool_server
from judgelab.judge_pool.worker import RolloutScorer
from judgelab.queues import Consumer
from judgelab.queues.names import StreamNames
from judgelab.queues.startup import wait_for_redis
from judgelab.serving.lifecycle import WorkerThreads, announce, consumer_name, run_until_signalled
from judgelab.serving.metrics import ServiceMetrics
from judgelab.serving.security import SecurityOptions, set_process_security
from judgelab.serving.stream_worker import StreamWorker
from judgelab.spec.experiment import Experiment

log = logging.getLogger(__name__)

SERVICE = "judge-pool"
CONSUMER_GROUP = "judge-pool"


@dataclass(frozen=True)
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 0
    metrics_port: int | None = 0  # None: no /metrics endpoint
    judges: frozenset[str] | None = None  # None: every judge of the experiment
    grace_s: float = 30.0
    redis_url: str | None = None  # set: also consume the arms' rollout streams
    # None: the experiment's spec.runtime.queues (judge_pool_claim_idle_ms, redis_wait_s).
    claim_idle_ms: int | None = None
    redis_wait_s: float | None = None
    # TLS / tokens / quotas: flags of `judgelab serve`, else the JUDGELAB_* variables.
    security: SecurityOptions = field(default_factory=SecurityOptions.from_env)


def serve_judge_pool(experiment: Experiment, options: ServeOptions) -> None:
    set_process_security(options.security)
    metrics = ServiceMetrics(SERVICE, experiment=experiment.metadata.name)
    only = set(options.judges) if options.judges is not None else None
    pool = build_judge_pool(experiment, metrics=metrics, only=only)
    server = start_judge_pool_server(pool, host=options.host, port=options.port)
    metrics_port = (
        metrics.serve_http(options.metrics_port, options.host)
        if options.metrics_port is not None
        else None
    )
    try:
        workers = start_workers(experiment, pool, options, metrics)
    except BaseException:
        server.stop(0)
        pool.close()
        raise
    announce(
        {
            "service": SERVICE,
            "grpc": server.address,
            "metrics": metrics_port,
            "judges": [j.name for j in pool.judges],
            "streams": workers.streams,
        }
    )
    run_until_signalled([workers.stop, lambda: server.stop(options.grace_s), pool.close])


def start_workers(
    experiment: Experiment, pool: JudgePool, options: ServeOptions, metrics: ServiceMetrics
) -> WorkerThreads:
    """One stream worker per arm whose judge this pool serves (none without Redis)."""
    threads = WorkerThreads()
    if options.redis_url is None:
        return threads
    queues = experiment.spec.runtime.queues
    wait_s = queues.redis_wait_s if options.redis_wait_s is None else options.redis_wait_s
    client = wait_for_redis(options.redis_url, wait_s)
    claim_idle_ms = options.claim_idle_ms or queues.judge_pool_claim_idle_ms
    names = StreamNames(experiment.metadata.name)
    served = {entry.name for entry in pool.judges}
    for arm in experiment.spec.arms:
        if arm.judge not in served:
            continue
        consumer = Consumer(
            client,
            names.rollouts(arm.name),
            CONSUMER_GROUP,
            consumer_name(),
            claim_idle_ms=claim_idle_ms,
            max_deliveries=queues.max_deliveries,
        )
        threads.start(
            StreamWorker(consumer, RolloutScorer(pool, names, {arm.judge}), metrics=metrics)
        )
    return threads
