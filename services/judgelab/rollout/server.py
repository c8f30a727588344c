"""Build one generator per policy arm from an experiment and serve the first over gRPC."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from judgelab.api.v1 import rollout_pb2, rollout_pb2_grpc
from judgelab.engines.base import Engine
from judgelab.engines.policy_store import PolicyStore, policy_root
from judgelab.queues.names import StreamNames
from judgelab.rollout.generator import GenerationDefaults, RolloutGenerator
from judgelab.rollout.metrics import RolloutMetrics
from judgelab.rollout.policy import PolicyHolder
from judgelab.rollout.servicer import RolloutGeneratorServicer
from judgelab.serving.server import GrpcServer, ServiceBinding
from judgelab.spec.experiment import Experiment
from judgelab.spec.model import ModelSpec

if TYPE_CHECKING:
    import redis

log = logging.getLogger(__name__)

SERVICE_NAME = rollout_pb2.DESCRIPTOR.services_by_name["RolloutGenerator"].full_name
EngineFactory = Callable[[ModelSpec], Engine]


@dataclass(frozen=True)
class ArmGenerator:
    """The generator of one arm: its own policy line (versions), judge and streams."""

    arm: str
    judge: str
    generator: RolloutGenerator


def build_generators(
    experiment: Experiment,
    *,
    arms: set[str] | None = None,
    redis: redis.Redis | None = None,
    metrics: RolloutMetrics | None = None,
    engine_factory: EngineFactory | None = None,
) -> list[ArmGenerator]:
    """One generator per arm (or per arm in ``arms``), each on its own copy of the policy."""
    if engine_factory is None:
        from judgelab.engines import build_engine

        engine_factory = build_engine
    known = [arm.name for arm in experiment.spec.arms]
    unknown = sorted((arms or set()) - set(known))
    if unknown:
        raise ValueError(f"no arm named {', '.join(unknown)} (arms: {', '.join(known) or 'none'})")
    if not known:
        raise ValueError("the experiment has no policy arms to generate rollouts for")
    policy = experiment.spec.policy
    names = StreamNames(experiment.metadata.name)
    defaults = GenerationDefaults.from_spec(policy)
    built = []
    for arm in experiment.spec.arms:
        if arms is not None and arm.name not in arms:
            continue
        log.info("loading policy %s for arm %s", policy.model.name, arm.name)
        store = PolicyStore(
            policy_root(experiment.spec.runtime.run_dir, experiment.metadata.name, arm.name),
            redis=redis,
            key=names.policy_version(arm.name) if redis is not None else None,
            base_model=policy.model.name,
        )
        holder = PolicyHolder(
            engine_factory(policy.model),
            store,
            base_model=policy.model.name,
            arm=arm.name,
            metrics=metrics,
        )
        built.append(
            ArmGenerator(arm.name, arm.judge, RolloutGenerator(holder, defaults, metrics=metrics))
        )
    return built


def start_rollout_generator_server(
    generator: RolloutGenerator,
    host: str = "127.0.0.1",
    port: int = 0,
    metrics: RolloutMetrics | None = None,
    queue_lag: Callable[[], int] | None = None,
    max_workers: int = 16,
) -> GrpcServer:
    binding = ServiceBinding(
        RolloutGeneratorServicer(generator, queue_lag),
        rollout_pb2_grpc.add_RolloutGeneratorServicer_to_server,
        SERVICE_NAME,
    )
    service_metrics = metrics.service if metrics is not None else None
    return GrpcServer(
        [binding], host=host, port=port, metrics=service_metrics, max_workers=max_workers
    ).start()
