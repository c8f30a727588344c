"""What each arm of a ``dpo-self-judge`` study runs, and its gold evaluation.

* ``self-judge``: the self-judging DPO loop, reference in the judge prompt per
  ``policy.algorithm.with_reference``;
* ``reference-free``: the same loop with the reference left out;
* ``external-judge`` (when ``policy.algorithm.external_judge`` names a pairwise judge): the
  same loop judged by that judge through the judge pool, with the reference when the judge is
  reference-guided;
* ``sft-on-references``: SFT of the policy on the reference answers.

Each arm then answers the held-out prompts, as does the starting policy, and the gold judge's
win rate of the arm over the start (bootstrap CI) goes to ``ARM/gold_win_rate.json``;
``ARM/summary.json`` is written last and marks the arm done (a rerun returns it).
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from judgelab.engines.adapters import merged_engine
from judgelab.engines.base import SamplingParams
from judgelab.engines.transformers_engine import TransformersEngine
from judgelab.phases.stages import EXTERNAL_JUDGE_UNIT, SELF_JUDGE_UNIT
from judgelab.selfimprove.evaluate import gold_win_rate, write_win_rate
from judgelab.selfimprove.files import (
    SUMMARY,
    read_json,
    save_weights,
    weights_dir,
    write_json,
)
from judgelab.selfimprove.loop import LoopSettings, load_weights, run_rounds
from judgelab.selfimprove.pool_judge import PoolJudge
from judgelab.selfimprove.prompts import PromptRow
from judgelab.selfimprove.sft_baseline import SFT_ON_REFERENCES, train_on_references
from judgelab.spec.experiment import Experiment
from judgelab.spec.policy import DpoSelfJudgeAlgorithm
from judgelab.units.gold import GoldLabeller
from judgelab.units.progress import ProgressFn

REFERENCE_FREE = "reference-free"
ARMS = (SELF_JUDGE_UNIT, EXTERNAL_JUDGE_UNIT, REFERENCE_FREE, SFT_ON_REFERENCES)


def dpo_algorithm(experiment: Experiment) -> DpoSelfJudgeAlgorithm:
    algorithm = experiment.spec.policy.algorithm
    if not isinstance(algorithm, DpoSelfJudgeAlgorithm):
        raise ValueError(f"the self-improvement arms need dpo-self-judge, not {algorithm.name!r}")
    return algorithm


def run_arm(
    experiment: Experiment,
    arm: str,
    base: TransformersEngine,
    train: Sequence[PromptRow],
    held_out: Sequence[PromptRow],
    arm_dir: Path,
    gold: GoldLabeller | None,
    progress: ProgressFn | None = None,
    judge_pool_address: str | None = None,
) -> dict[str, Any]:
    """Train arm ``arm`` from ``base`` and gold-evaluate it (skipped when ``gold`` is None);
    returns the arm's summary. ``judge_pool_address``: where the external-judge arm's judge
    is served."""
    if (arm_dir / SUMMARY).is_file():
        done: dict[str, Any] = read_json(arm_dir / SUMMARY)
        return done
    if arm not in ARMS:
        raise ValueError(f"unknown self-improvement arm {arm!r}; arms: {', '.join(ARMS)}")
    model, training = _train(experiment, arm, base, train, arm_dir, progress, judge_pool_address)
    summary: dict[str, Any] = {"arm": arm, "training": training, "gold_win_rate": None}
    if gold is not None:
        spec = experiment.spec
        final = merged_engine(copy.deepcopy(model), base)
        generation = spec.policy.generation
        params = SamplingParams(
            max_new_tokens=generation.max_new_tokens,
            temperature=generation.temperature,
            top_p=generation.top_p,
            seed=spec.evaluation.seed,
        )
        record = gold_win_rate(
            base,
            final,
            held_out,
            gold,
            params,
            samples_per_prompt=spec.evaluation.samples_per_prompt,
            seed=spec.evaluation.seed,
        )
        record["arm"] = arm
        write_win_rate(arm_dir, record)
        summary["gold_win_rate"] = record["win_rate"]
        summary["gold_start_mean"] = record["gold_start_mean"]
        summary["gold_end_mean"] = record["gold_end_mean"]
    write_json(arm_dir / SUMMARY, summary)
    return summary


def _train(
    experiment: Experiment,
    arm: str,
    base: TransformersEngine,
    train: Sequence[PromptRow],
    arm_dir: Path,
    progress: ProgressFn | None,
    judge_pool_address: str | None = None,
) -> tuple[Any, dict[str, Any]]:
    """(final model, what training did) for the arm."""
    spec = experiment.spec
    algorithm = dpo_algorithm(experiment)
    seed = spec.runtime.seed
    if arm == SFT_ON_REFERENCES:
        return _sft(experiment, base, train, arm_dir, progress)
    if arm == EXTERNAL_JUDGE_UNIT:
        return _external(experiment, base, train, arm_dir, progress, judge_pool_address)
    settings = LoopSettings(
        arm=arm,
        algorithm=algorithm,
        lora=spec.policy.lora,
        with_reference=algorithm.with_reference and arm == SELF_JUDGE_UNIT,
        max_new_tokens=spec.policy.generation.max_new_tokens,
        seed=seed,
    )
    result = run_rounds(base, train, settings, arm_dir, progress=progress)
    return result.model, {"kind": "self-judge-dpo", "rounds": result.rounds}


def _external(
    experiment: Experiment,
    base: TransformersEngine,
    train: Sequence[PromptRow],
    arm_dir: Path,
    progress: ProgressFn | None,
    address: str | None,
) -> tuple[Any, dict[str, Any]]:
    """The loop judged by ``external_judge`` through the judge pool at ``address``."""
    spec = experiment.spec
    algorithm = dpo_algorithm(experiment)
    name = algorithm.external_judge
    found = next((j for j in spec.judges if j.name == name), None)
    if name is None or found is None:
        raise ValueError(
            f"arm {EXTERNAL_JUDGE_UNIT!r} needs policy.algorithm.external_judge to name a judge "
            f"of spec.judges (got {name!r})"
        )
    if not address:
        raise ValueError(
            f"arm {EXTERNAL_JUDGE_UNIT!r} judges with {name!r} of the judge pool, but no "
            "judge-pool address was given"
        )
    settings = LoopSettings(
        arm=EXTERNAL_JUDGE_UNIT,
        algorithm=algorithm,
        lora=spec.policy.lora,
        with_reference=found.reference_guided,
        max_new_tokens=spec.policy.generation.max_new_tokens,
        seed=spec.runtime.seed,
    )
    judge = PoolJudge(
        address,
        name,
        reference_guided=found.reference_guided,
        both_orders=algorithm.both_orders,
        experiment=experiment.metadata.name,
    )
    try:
        result = run_rounds(base, train, settings, arm_dir, external=judge, progress=progress)
    finally:
        judge.close()
    return result.model, {"kind": "external-judge-dpo", "judge": name, "rounds": result.rounds}


def _sft(
    experiment: Experiment,
    base: TransformersEngine,
    train: Sequence[PromptRow],
    arm_dir: Path,
    progress: ProgressFn | None,
) -> tuple[Any, dict[str, Any]]:
    spec = experiment.spec
    lora = spec.policy.lora
    directory = arm_dir / "sft"
    if (directory / SUMMARY).is_file():
        model = load_weights(base, weights_dir(directory, lora.enabled), lora.enabled)
        return model, read_json(directory / SUMMARY)
    with tempfile.TemporaryDirectory(prefix="sft-on-references-") as work:
        result, too_long = train_on_references(
            copy.deepcopy(base.model),
            base.tokenizer,
            train,
            dpo_algorithm(experiment),
            lora,
            Path(work),
            seed=spec.runtime.seed,
            progress=progress,
            mixed_precision=base.mixed_precision,
        )
    save_weights(result.model, base.tokenizer, weights_dir(directory, lora.enabled), lora.enabled)
    training = {
        "kind": "sft-on-references",
        "examples": len(train) - len(too_long),
        "skipped_too_long": too_long,
        "steps": result.steps,
        "losses": result.losses,
        "seconds": round(result.seconds, 3),
    }
    write_json(directory / SUMMARY, training)
    return result.model, training
