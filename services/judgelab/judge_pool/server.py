"""Build the judge pool from an experiment and serve it over gRPC."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

from judgelab.api.v1 import judge_pool_pb2, judge_pool_pb2_grpc
from judgelab.engines.base import Engine
from judgelab.judge_pool.pool import JudgePool
from judgelab.judge_pool.servicer import JudgePoolServicer
from judgelab.judging.config import JudgeConfig
from judgelab.judging.pairwise import PairwiseJudge
from judgelab.judging.pointwise import PointwiseJudge
from judgelab.serving.metrics import ServiceMetrics
from judgelab.serving.server import GrpcServer, ServiceBinding
from judgelab.spec.experiment import Experiment
from judgelab.spec.judges import ProxyJudgeSpec
from judgelab.spec.model import ModelSpec

log = logging.getLogger(__name__)

SERVICE_NAME = judge_pool_pb2.DESCRIPTOR.services_by_name["JudgePool"].full_name
EngineFactory = Callable[[ModelSpec], Engine]


def build_judge_pool(
    experiment: Experiment,
    *,
    metrics: ServiceMetrics | None = None,
    engine_factory: EngineFactory | None = None,
    only: set[str] | None = None,
) -> JudgePool:
    """Every proxy judge of the experiment (or those in ``only``); one engine per distinct model."""
    if engine_factory is None:
        from judgelab.engines import build_engine

        engine_factory = build_engine
    names = {spec.name for spec in experiment.spec.judges}
    unknown = sorted((only or set()) - names)
    if unknown:
        known = ", ".join(sorted(names))
        raise ValueError(f"no judge named {', '.join(unknown)} (judges: {known})")
    pool = JudgePool(metrics=metrics)
    engines: dict[str, Engine] = {}
    for spec in experiment.spec.judges:
        if only is not None and spec.name not in only:
            continue
        key = json.dumps(spec.model.model_dump(mode="json"), sort_keys=True)
        if key not in engines:
            log.info("loading %s for judge %s", spec.model.name, spec.name)
            engines[key] = engine_factory(spec.model)
        add_judge(pool, spec, _trained(experiment, spec.name, engines[key]))
    return pool


def _trained(experiment: Experiment, judge: str, engine: Engine) -> Engine:
    """The judge's engine with its trained adapter merged, once TrainJudges has written one."""
    from judgelab.engines.adapters import apply_adapter, judge_adapter_dir
    from judgelab.engines.transformers_engine import TransformersEngine

    run = Path(experiment.spec.runtime.run_dir) / experiment.metadata.name
    adapter = judge_adapter_dir(run, judge)
    if not adapter.is_dir():
        return engine

    if not isinstance(engine, TransformersEngine):
        raise ValueError(
            f"judge {judge!r} has a trained adapter at {adapter}, but its model runs on an engine "
            "that cannot load one (use the transformers engine)"
        )
    log.info("judge %s: serving the trained adapter %s", judge, adapter)
    return apply_adapter(engine, adapter)


def add_judge(pool: JudgePool, spec: ProxyJudgeSpec, engine: Engine) -> None:
    config = JudgeConfig.from_proxy_spec(spec)
    judge = (PointwiseJudge if spec.protocol == "pointwise" else PairwiseJudge)(engine, config)
    pool.add(
        spec.name,
        judge,
        max_batch=spec.model.max_batch_size,
        max_wait_s=spec.model.max_batch_wait_ms / 1000,
        max_queue=spec.model.max_queue,
    )


def start_judge_pool_server(
    pool: JudgePool,
    host: str = "127.0.0.1",
    port: int = 0,
    metrics: ServiceMetrics | None = None,
    max_workers: int = 32,
) -> GrpcServer:
    binding = ServiceBinding(
        JudgePoolServicer(pool), judge_pool_pb2_grpc.add_JudgePoolServicer_to_server, SERVICE_NAME
    )
    return GrpcServer([binding], host=host, port=port, metrics=metrics or pool.metrics,
                      max_workers=max_workers).start()

