"""Build the gold annotator from an experiment and serve it over gRPC."""

from __future__ import annotations

import logging
from typing import Any

from judgelab.annotator.cache import DEFAULT_NAMESPACE, AnnotationCache
from judgelab.annotator.core import SERVICE, GoldAnnotatorCore
from judgelab.annotator.ratelimit import RateLimiter
from judgelab.annotator.servicer import GoldAnnotatorServicer
from judgelab.api.v1 import gold_annotator_pb2, gold_annotator_pb2_grpc
from judgelab.engines.base import Engine
from judgelab.judging import JudgeConfig, PointwiseJudge
from judgelab.serving.metrics import ServiceMetrics
from judgelab.serving.server import GrpcServer, ServiceBinding
from judgelab.spec.experiment import Experiment

log = logging.getLogger(__name__)

SERVICE_NAME = gold_annotator_pb2.DESCRIPTOR.services_by_name["GoldAnnotator"].full_name


def build_gold_annotator(
    experiment: Experiment,
    *,
    redis: Any = None,
    engine: Engine | None = None,
    metrics: ServiceMetrics | None = None,
    cache_namespace: str = DEFAULT_NAMESPACE,
) -> GoldAnnotatorCore:
    """The experiment's gold judge; cached in ``redis`` when the spec asks for a cache and a
    client is given; the engine built from the spec unless one is given (then not owned)."""
    gold = experiment.spec.gold
    config = JudgeConfig.from_gold_spec(gold)
    owns_engine = engine is None
    if engine is None:
        from judgelab.engines import build_engine

        log.info("loading gold model %s", gold.model.name)
        engine = build_engine(gold.model)
    cache = AnnotationCache(redis, cache_namespace) if gold.cache and redis is not None else None
    if gold.cache and cache is None:
        log.warning("gold cache is on in the spec but no Redis was given: nothing is cached")
    return GoldAnnotatorCore(
        PointwiseJudge(engine, config),
        cache=cache,
        rate_limiter=RateLimiter(gold.requests_per_minute),
        max_batch=gold.model.max_batch_size,
        max_wait_s=gold.model.max_batch_wait_ms / 1000,
        max_queue=gold.model.max_queue,
        metrics=metrics,
        owns_engine=owns_engine,
    )


def gold_metrics(experiment: Experiment) -> ServiceMetrics:
    return ServiceMetrics(SERVICE, experiment.metadata.name)


def start_gold_annotator_server(
    core: GoldAnnotatorCore,
    host: str = "127.0.0.1",
    port: int = 0,
    max_workers: int = 32,
) -> GrpcServer:
    binding = ServiceBinding(
        GoldAnnotatorServicer(core),
        gold_annotator_pb2_grpc.add_GoldAnnotatorServicer_to_server,
        SERVICE_NAME,
    )
    return GrpcServer(
        [binding], host=host, port=port, metrics=core.metrics, max_workers=max_workers
    ).start()
