"""`judgelab serve rollout-generator`: gRPC Generate/Status and, with Redis, one stream worker
per arm (prompts in, rollout groups out, new policy versions picked up between batches)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from judgelab.queues import Consumer
from judgelab.queues.names import StreamNames
from judgelab.queues.startup import wait_for_redis
from judgelab.rollout.metrics import SERVICE, RolloutMetrics
from judgelab.rollout.server import ArmGenerator, build_generators, start_rollout_generator_server
from judgelab.rollout.worker import PromptSampler, consumer_group
from judgelab.serving.lifecycle import WorkerThreads, announce, consumer_name, run_until_signalled
from judgelab.serving.metrics import ServiceMetrics
from judgelab.serving.security import SecurityOptions, set_process_security
from judgelab.serving.stream_worker import StreamWorker
from judgelab.spec.experiment import Experiment
from judgelab.spec.policy import GrpoAlgorithm

if TYPE_CHECKING:
    import redis

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 0
    metrics_port: int | None = 0  # None: no /metrics endpoint
    arms: frozenset[str] | None = None  # None: every arm of the experiment
    grace_s: float = 30.0
    redis_url: str | None = None  # set: consume prompts, push rollouts, follow policy versions
    batch_prompts: int = 8  # prompts read (and sampled together) per batch
    # A batch idle this long is taken over by another generator: above the longest batch.
    # None: the experiment's spec.runtime.queues.rollout_claim_idle_ms (600 s by default).
    claim_idle_ms: int | None = None
    redis_wait_s: float | None = None  # None: spec.runtime.queues.redis_wait_s
    # TLS / tokens / quotas: flags of `judgelab serve`, else the JUDGELAB_* variables.
    security: SecurityOptions = field(default_factory=SecurityOptions.from_env)


def serve_rollout_generator(experiment: Experiment, options: ServeOptions) -> None:
    set_process_security(options.security)
    metrics = RolloutMetrics(ServiceMetrics(SERVICE, experiment=experiment.metadata.name))
    queues = experiment.spec.runtime.queues
    wait_s = queues.redis_wait_s if options.redis_wait_s is None else options.redis_wait_s
    client = wait_for_redis(options.redis_url, wait_s) if options.redis_url is not None else None
    arms = set(options.arms) if options.arms is not None else None
    generators = build_generators(experiment, arms=arms, redis=client, metrics=metrics)
    workers, consumers = start_workers(experiment, generators, client, metrics, options)
    first = consumers[0] if consumers else None
    server = start_rollout_generator_server(
        generators[0].generator,
        host=options.host,
        port=options.port,
        metrics=metrics,
        queue_lag=first.lag if first is not None else None,
    )
    metrics_port = (
        metrics.service.serve_http(options.metrics_port, options.host)
        if options.metrics_port is not None
        else None
    )
    announce(
        {
            "service": SERVICE,
            "grpc": server.address,
            "metrics": metrics_port,
            "arms": [g.arm for g in generators],
            "streams": workers.streams,
        }
    )
    closers = [g.generator.holder.close for g in generators]
    run_until_signalled([workers.stop, lambda: server.stop(options.grace_s), *closers])


def start_workers(
    experiment: Experiment,
    generators: list[ArmGenerator],
    client: redis.Redis | None,
    metrics: RolloutMetrics,
    options: ServeOptions,
) -> tuple[WorkerThreads, list[Consumer]]:
    """One prompt-stream worker per arm, in the arm's consumer group (none without Redis)."""
    threads = WorkerThreads()
    consumers: list[Consumer] = []
    if client is None:
        return threads, consumers
    names = StreamNames(experiment.metadata.name)
    algorithm = experiment.spec.policy.algorithm
    staleness = algorithm.max_staleness if isinstance(algorithm, GrpoAlgorithm) else 0
    queues = experiment.spec.runtime.queues
    claim_idle_ms = options.claim_idle_ms or queues.rollout_claim_idle_ms
    for entry in generators:
        consumer = Consumer(
            client,
            names.prompts,
            consumer_group(entry.arm),
            consumer_name(),
            claim_idle_ms=claim_idle_ms,
            max_deliveries=queues.max_deliveries,
        )
        sampler = PromptSampler(
            entry.generator, names, arm=entry.arm, judge=entry.judge, max_staleness=staleness
        )
        threads.start(
            StreamWorker(consumer, sampler, count=options.batch_prompts, metrics=metrics.service)
        )
        consumers.append(consumer)
    return threads, consumers
