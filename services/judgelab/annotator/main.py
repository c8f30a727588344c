"""`judgelab serve gold-annotator`: the gold annotator's gRPC server over the durable cache."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from judgelab.annotator.core import SERVICE
from judgelab.annotator.server import build_gold_annotator, start_gold_annotator_server
from judgelab.annotator.worker import GoldRequestHandler
from judgelab.queues.consumer import Consumer
from judgelab.queues.names import StreamNames
from judgelab.serving.lifecycle import WorkerThreads, announce, consumer_name, run_until_signalled
from judgelab.serving.metrics import ServiceMetrics
from judgelab.serving.security import SecurityOptions, set_process_security
from judgelab.serving.stream_worker import StreamWorker
from judgelab.spec.experiment import Experiment

log = logging.getLogger(__name__)

CONSUMER_GROUP = "gold-annotator"


@dataclass(frozen=True)
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 0
    metrics_port: int | None = 0  # None: no /metrics endpoint
    grace_s: float = 30.0
    redis_url: str | None = None  # None: the experiment's runtime.redis_url, if any
    # None: the experiment's spec.runtime.queues (gold_annotator_claim_idle_ms, redis_wait_s).
    claim_idle_ms: int | None = None
    redis_wait_s: float | None = None
    # TLS / tokens / quotas: flags of `judgelab serve`, else the JUDGELAB_* variables.
    security: SecurityOptions = field(default_factory=SecurityOptions.from_env)


def serve_gold_annotator(experiment: Experiment, options: ServeOptions) -> None:
    set_process_security(options.security)
    metrics = ServiceMetrics(SERVICE, experiment=experiment.metadata.name)
    queues = experiment.spec.runtime.queues
    wait_s = queues.redis_wait_s if options.redis_wait_s is None else options.redis_wait_s
    redis = _redis(options.redis_url or experiment.spec.runtime.redis_url, wait_s)
    core = build_gold_annotator(experiment, redis=redis, metrics=metrics)
    server = start_gold_annotator_server(core, host=options.host, port=options.port)
    metrics_port = (
        metrics.serve_http(options.metrics_port, options.host)
        if options.metrics_port is not None
        else None
    )
    workers = WorkerThreads()
    if redis is not None:
        names = StreamNames(experiment.metadata.name)
        claim_idle_ms = options.claim_idle_ms or queues.gold_annotator_claim_idle_ms
        consumer = Consumer(
            redis,
            names.gold_requests,
            CONSUMER_GROUP,
            consumer_name(),
            claim_idle_ms=claim_idle_ms,
            max_deliveries=queues.max_deliveries,
        )
        workers.start(StreamWorker(consumer, GoldRequestHandler(core, names), metrics=metrics))
    announce(
        {
            "service": SERVICE,
            "grpc": server.address,
            "metrics": metrics_port,
            "cached": core.cache is not None,
            "streams": workers.streams,
        }
    )
    run_until_signalled([workers.stop, lambda: server.stop(options.grace_s), core.close])


def _redis(url: str | None, wait_s: float) -> Any:
    if url is None:
        return None
    from judgelab.queues.startup import wait_for_redis

    return wait_for_redis(url, wait_s)
