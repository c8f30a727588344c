"""The self-judging arms: rounds of sample K → judge every ordered pair → best vs worst → DPO.

Round r samples with the model of round r-1 (round 1: the starting policy), judges with that
same model unless a judge engine or an external judge (the ``external-judge`` arm's judge-pool
judge) is given, and trains DPO with that model as the reference (iterative DPO). Each round writes
``ARM/round-{r}/`` — ``pairs.jsonl``, the weights (``adapter/`` with LoRA, else ``model/``) and
``summary.json`` last, each atomically — so a rerun resumes after the last finished round.
"""

from __future__ import annotations

import copy
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from judgelab.engines.adapters import merged_engine
from judgelab.engines.base import Engine, SamplingParams
from judgelab.engines.transformers_engine import TransformersEngine
from judgelab.selfimprove.dpo import prepare_policy, train_dpo_round
from judgelab.selfimprove.files import (
    SUMMARY,
    read_json,
    round_dir,
    save_weights,
    weights_dir,
    write_json,
)
from judgelab.selfimprove.pairs import PairSet, best_vs_worst
from judgelab.selfimprove.prompts import PromptRow, require_references
from judgelab.selfimprove.sampling import Candidates, sample_candidates
from judgelab.selfimprove.self_judge import JudgedCandidates, SelfJudge
from judgelab.spec.policy import DpoSelfJudgeAlgorithm
from judgelab.spec.training import LoraSpec
from judgelab.units.jsonio import write_jsonl_atomic
from judgelab.units.progress import ProgressFn


@dataclass(frozen=True)
class LoopSettings:
    """One self-judging arm: its name, whether the judge sees references, how to train."""

    arm: str
    algorithm: DpoSelfJudgeAlgorithm
    lora: LoraSpec
    with_reference: bool
    max_new_tokens: int
    seed: int = 0


class ExternalJudge(Protocol):
    """A judge other than the policy that scores candidates (``selfimprove.pool_judge``)."""

    @property
    def name(self) -> str: ...

    def score(self, batch: Sequence[Candidates], arm: str) -> list[JudgedCandidates]: ...


@dataclass
class LoopResult:
    """The arm's final model (a peft model with LoRA) and every round's summary."""

    model: Any
    rounds: list[dict[str, Any]] = field(default_factory=list)


def run_rounds(
    base: TransformersEngine,
    rows: Sequence[PromptRow],
    settings: LoopSettings,
    arm_dir: Path,
    *,
    judge_engine: Engine | None = None,
    external: ExternalJudge | None = None,
    progress: ProgressFn | None = None,
) -> LoopResult:
    """Every round of ``settings.algorithm`` on ``rows``; rounds already done are loaded.
    Judging: ``external`` when given, else ``judge_engine``, else the round's policy."""
    if settings.with_reference:
        require_references(rows, settings.arm)
    lora = settings.lora.enabled
    total = settings.algorithm.rounds
    done = [r for r in range(1, total + 1) if (round_dir(arm_dir, r) / SUMMARY).is_file()]
    last = max(done, default=0)
    if last:
        model = load_weights(base, weights_dir(round_dir(arm_dir, last), lora), lora)
    else:
        model = prepare_policy(copy.deepcopy(base.model), settings.lora)
    result = LoopResult(model, [read_json(round_dir(arm_dir, r) / SUMMARY) for r in done])
    for number in range(last + 1, total + 1):
        report = _reporter(progress, number, total)
        judging = external, judge_engine
        summary = _round(arm_dir, base, rows, settings, number, result, judging, report)
        directory = round_dir(arm_dir, number)
        save_weights(result.model, base.tokenizer, weights_dir(directory, lora), lora)
        write_json(directory / SUMMARY, summary)
        result.rounds.append(summary)
    return result


def _round(
    arm_dir: Path,
    base: TransformersEngine,
    rows: Sequence[PromptRow],
    settings: LoopSettings,
    number: int,
    result: LoopResult,
    judging: tuple[ExternalJudge | None, Engine | None],
    report: ProgressFn,
) -> dict[str, Any]:
    algorithm = settings.algorithm
    external, judge_engine = judging
    policy = base if number == 1 else merged_engine(copy.deepcopy(result.model), base)
    params = SamplingParams(
        max_new_tokens=settings.max_new_tokens,
        temperature=algorithm.temperature,
        top_p=algorithm.top_p,
        seed=settings.seed * 1000 + number,
    )
    report(0, 3, "sampling")
    started = time.perf_counter()
    candidates = sample_candidates(policy, rows, algorithm.num_candidates, params)
    sampled = time.perf_counter()
    if external is not None:
        report(1, 3, f"judging with {external.name}")
        judged = external.score(candidates, settings.arm)
        judge_name = external.name
    else:
        report(1, 3, "self-judging")
        judge = SelfJudge.on(judge_engine or policy, settings.with_reference, algorithm.both_orders)
        judged = judge.score(candidates, settings.arm)
        judge_name = "policy" if judge_engine is None else judge_engine.name
    judging_s = time.perf_counter() - sampled
    pairs = best_vs_worst(judged)
    write_pairs(round_dir(arm_dir, number), pairs)
    summary: dict[str, Any] = {
        "round": number,
        "arm": settings.arm,
        "with_reference": settings.with_reference,
        "judge": judge_name,
        "prompts": len(rows),
        "candidates_per_prompt": algorithm.num_candidates,
        "sampling_seconds": round(sampled - started, 3),
        **_judging_json(judged, judging_s),
        **pairs.to_json(),
        "dpo": None,
    }
    report(2, 3, f"dpo on {len(pairs.pairs)} pairs ({pairs.ties} ties)")
    if pairs.pairs:
        # The round's reference is the model it starts from (for LoRA, TRL copies the adapter).
        reference = None if settings.lora.enabled else copy.deepcopy(result.model).eval()
        with tempfile.TemporaryDirectory(prefix="self-judge-dpo-") as work:
            trained = train_dpo_round(
                result.model, base.tokenizer, pairs.pairs, algorithm, Path(work),
                reference=reference, seed=settings.seed + number,
                mixed_precision=base.mixed_precision,
            )  # fmt: skip
        result.model = trained.model
        summary["dpo"] = trained.to_json()
    else:
        summary["note"] = "every prompt was a tie: no DPO this round, the model is unchanged"
    report(3, 3, "round done")
    return summary


def write_pairs(directory: Path, pairs: PairSet) -> None:
    rows = [
        {
            "id": p.row.id,
            "chosen": p.chosen,
            "rejected": p.rejected,
            "chosen_score": p.chosen_score,
            "rejected_score": p.rejected_score,
        }
        for p in pairs.pairs
    ]
    write_jsonl_atomic(directory / "pairs.jsonl", rows)


def _judging_json(judged: Sequence[JudgedCandidates], seconds: float) -> dict[str, Any]:
    comparisons = sum(j.comparisons for j in judged)
    return {
        "comparisons": comparisons,
        "invalid_comparisons": sum(j.invalid_comparisons for j in judged),
        "judging_seconds": round(seconds, 3),
        "comparisons_per_second": comparisons / seconds if seconds > 0 else None,
    }


def load_weights(base: TransformersEngine, path: Path, lora: bool) -> Any:
    """A round's saved policy, trainable: the adapter on a copy of the base, or full weights."""
    if lora:
        from peft import PeftModel

        return PeftModel.from_pretrained(copy.deepcopy(base.model), str(path), is_trainable=True)
    from transformers import AutoModelForCausalLM

    model: Any = AutoModelForCausalLM.from_pretrained(str(path))
    return model.to(base.device)


def _reporter(progress: ProgressFn | None, number: int, total: int) -> ProgressFn:
    def report(done: int, parts: int, note: str) -> None:
        if progress is not None:
            progress((number - 1) * parts + done, total * parts, f"round {number}/{total}: {note}")

    return report
