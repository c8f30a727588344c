"""``python -m judgelab.learner.main EXPERIMENT --phase=train-policy [--arm ARM]`` (or torchrun).

The experiment chart's Jobs spell these ``--stage=STAGE --unit=UNIT``; ``--stage=train-judges
--unit=JUDGE`` trains that proxy judge (the TrainJudges unit, on rank 0).

Rank 0 serves gRPC ``Learner`` and ``/metrics``, reads the arm's streams, publishes versions and
writes checkpoints under ``RUN_DIR/EXPERIMENT/arms/ARM``; other ranks train on what it
broadcasts (under ``data_parallel: fsdp`` they also join the gathers and the gold evaluation's
generation). On CUDA each process takes the GPU of its ``LOCAL_RANK``. Without ``--arm`` the
arms are trained one after another. SIGTERM stops after the step in progress (checkpointing
first). With ``--gold-address`` the policy is gold-evaluated at step 0 and every
``evaluation.every_n_steps`` (see ``gold_eval``); ``--judge-pool-address`` adds the arm's proxy
judge on the same samples. With ``--feed-prompts`` rank 0 also pushes the arm's step prompts
(and replacements of dropped groups) to the prompts stream (``feeder``).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
from pathlib import Path

from judgelab.api.v1 import learner_pb2_grpc
from judgelab.engines.transformers_engine import TransformersEngine, select_device
from judgelab.learner.control import LearnerControl
from judgelab.learner.distributed import DistInfo, init_from_env, shutdown
from judgelab.learner.feeder import PUSHED_FILE, TRAIN_PROMPTS, PromptFeeder, load_prompts
from judgelab.learner.gold_eval import build_gold_evaluator
from judgelab.learner.job_annotation import JobAnnotator
from judgelab.learner.loop import LearnerLoop, LoopConfig
from judgelab.learner.metrics import LearnerMetrics
from judgelab.learner.publish import DirectoryPublisher
from judgelab.learner.servicer import SERVICE_NAME, LearnerServicer
from judgelab.learner.settings import settings_from_spec
from judgelab.learner.source import StreamGroupSource
from judgelab.learner.trainer import GrpoTrainer
from judgelab.queues.names import StreamNames
from judgelab.queues.startup import wait_for_redis
from judgelab.serving.lifecycle import announce
from judgelab.serving.security import (
    add_security_arguments,
    security_from_args,
    set_process_security,
)
from judgelab.serving.server import GrpcServer, ServiceBinding
from judgelab.spec.experiment import Experiment
from judgelab.spec.loader import load_experiment
from judgelab.spec.policy import GrpoAlgorithm

log = logging.getLogger(__name__)
PHASES = ("train-policy", "train-judges")
FEED_DEFAULT = Path("-")  # --feed-prompts without a file: the run's Annotate split


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="judgelab.learner.main", description=__doc__)
    parser.add_argument("experiment", help="Experiment YAML file")
    parser.add_argument("--phase", "--stage", default="train-policy", choices=PHASES)
    parser.add_argument(
        "--arm", "--unit", default=None, help="Arm to train (default: every arm, in turn)"
    )
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=50051, help="gRPC port (0: any free one)")
    parser.add_argument("--metrics-port", type=int, default=9090, help="/metrics port (-1: none)")
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL"))
    parser.add_argument("--checkpoint-every", type=int, default=1)
    parser.add_argument("--keep-checkpoints", type=int, default=3)
    parser.add_argument(
        "--gold-address",
        default=os.environ.get("JUDGELAB_GOLD_ADDRESS"),
        help="host:port of the gold annotator (enables the in-loop gold evaluation)",
    )
    parser.add_argument(
        "--judge-pool-address",
        default=os.environ.get("JUDGELAB_JUDGE_POOL_ADDRESS"),
        help="host:port of the judge pool (the arm's proxy judge scores the evaluation samples)",
    )
    parser.add_argument(
        "--heldout-prompts",
        type=Path,
        default=None,
        help="held-out prompts file (default: RUN_DIR/EXPERIMENT/annotate/policy_eval.jsonl)",
    )
    parser.add_argument(
        "--feed-prompts",
        type=Path,
        nargs="?",
        const=FEED_DEFAULT,
        default=None,
        metavar="FILE",
        help="push the arm's step prompts to the prompts stream from this training-prompts "
        "JSONL (no FILE: RUN_DIR/EXPERIMENT/annotate/policy_train.jsonl); off by default",
    )
    add_security_arguments(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        set_process_security(security_from_args(args))
    except ValueError as error:  # SecurityConfigError: names the flag / variable
        raise SystemExit(f"judgelab.learner.main: {error}") from None
    experiment = load_experiment(args.experiment)
    logging.basicConfig(level=experiment.spec.runtime.log_level.upper())
    if args.phase == "train-judges":
        _train_judge(experiment, args.arm)
        return
    info = init_from_env(select_device(experiment.spec.policy.model.device))
    arms = [a for a in experiment.spec.arms if args.arm in (None, a.name)]
    if not arms:
        raise SystemExit(f"no arm named {args.arm!r} in {experiment.metadata.name}")
    redis_url = args.redis_url or experiment.spec.runtime.redis_url
    if redis_url is None:
        raise SystemExit(
            "the learner needs Redis: --redis-url, REDIS_URL or spec.runtime.redis_url"
        )
    metrics = LearnerMetrics(experiment.metadata.name)
    control = LearnerControl()
    server = _start_services(args, metrics, control, experiment) if info.is_main else None
    signal.signal(signal.SIGTERM, lambda *_: control.request_stop("SIGTERM", True, 0))
    finished = False
    try:
        for arm in arms:
            _train_arm(experiment, arm.name, arm.seed, args, info, metrics, control, redis_url)
            if control.stop_requested:
                break
        finished = True
    finally:
        if server is not None:
            server.stop(10.0)
        shutdown(synchronise=finished)  # after a failure the other ranks may never get here


def _train_judge(experiment: Experiment, judge: str | None) -> None:
    from judgelab.units.judge_training import run_train_judge

    if judge is None:
        raise SystemExit("--stage=train-judges needs --unit=JUDGE")
    run = Path(experiment.spec.runtime.run_dir) / experiment.metadata.name
    if init_from_env().is_main:
        run_train_judge(experiment, run, judge)
    shutdown(synchronise=False)  # the other ranks do not wait for rank 0's training


def _train_arm(
    experiment: Experiment,
    arm: str,
    seed: int | None,
    args: argparse.Namespace,
    info: DistInfo,
    metrics: LearnerMetrics,
    control: LearnerControl,
    redis_url: str,
) -> None:
    policy = experiment.spec.policy
    algo = policy.algorithm
    if not isinstance(algo, GrpoAlgorithm):
        raise SystemExit(f"train-policy runs GRPO; {algo.name!r} is not served by this learner")
    settings = settings_from_spec(policy, experiment.spec.runtime.seed if seed is None else seed)
    engine = TransformersEngine.from_spec(policy.model)
    trainer = GrpoTrainer(engine.model, engine.tokenizer.pad_token_id, settings, dist_info=info)
    names = StreamNames(experiment.metadata.name)
    run = Path(experiment.spec.runtime.run_dir) / experiment.metadata.name
    source, publisher, feeder = None, None, None
    if info.is_main:
        client = wait_for_redis(redis_url, experiment.spec.runtime.queues.redis_wait_s)
        source = StreamGroupSource(client, names, arm, engine.tokenizer)
        publisher = DirectoryPublisher(
            run / "policy" / arm, client, names.policy_version(arm), base_model=policy.model.name
        )
        if args.feed_prompts is not None:
            path = run / TRAIN_PROMPTS if args.feed_prompts == FEED_DEFAULT else args.feed_prompts
            marker = run / "arms" / arm / PUSHED_FILE
            feeder = PromptFeeder(client, names, arm, load_prompts(path), algo, marker)
    control.update(total_steps=algo.steps)
    config = LoopConfig(
        arm,
        total_steps=algo.steps,
        prompts_per_step=algo.prompts_per_step,
        checkpoint_every=args.checkpoint_every,
        keep_checkpoints=args.keep_checkpoints,
        eval_every=experiment.spec.evaluation.every_n_steps,
        hacking_margin=experiment.spec.evaluation.hacking_margin,
    )
    evaluator = None
    # Under FSDP the other ranks generate along with rank 0 (they never score: no RPC is sent).
    if args.gold_address and (info.is_main or trainer.sharded):
        heldout = args.heldout_prompts or run / "annotate" / "policy_eval.jsonl"
        evaluator = build_gold_evaluator(
            experiment, arm, engine.tokenizer, heldout, args.gold_address, args.judge_pool_address
        )
    loop = LearnerLoop(
        trainer,
        source,
        publisher,
        run / "arms" / arm,
        config,
        evaluator=evaluator,
        metrics=metrics if info.is_main else None,
        control=control,
        annotator=JobAnnotator.from_env() if info.is_main else None,
        feeder=feeder,
    )
    loop.resume()
    loop.run()


def _start_services(
    args: argparse.Namespace,
    metrics: LearnerMetrics,
    control: LearnerControl,
    experiment: Experiment,
) -> GrpcServer:
    servicer = LearnerServicer(control, base_model=experiment.spec.policy.model.name)
    binding = ServiceBinding(servicer, learner_pb2_grpc.add_LearnerServicer_to_server, SERVICE_NAME)
    server = GrpcServer([binding], host=args.host, port=args.port, metrics=metrics.service).start()
    metrics_port = None
    if args.metrics_port >= 0:
        metrics_port = metrics.service.serve_http(args.metrics_port, args.host)
    announce({"service": "learner", "grpc": server.address, "metrics": metrics_port})
    return server


if __name__ == "__main__":
    main()
