"""The Evaluate unit of a ``dpo-self-judge`` study: collect what the arms measured, measure the
judges against gold, write ``RUN/evaluate/``.

TrainPolicy already gold-evaluated every arm against the starting policy on the held-out prompts
(``RUN/arms/{arm}/gold_win_rate.json``, with every answer and its gold score). Evaluate:

1. reads each planned arm's ``summary.json`` (training: per-round pairs, ties, comparisons,
   DPO losses and reward margins; SFT steps) and ``gold_win_rate.json`` (win rate with CI);
2. Arena-Hard-style: the gold judge scores the held-out reference answers and each arm's (and
   the start's) answers are compared with them (``selfimprove.versus_reference``); skipped when
   no held-out prompt has a reference; the same against ``evaluation.baseline_answers`` when it
   is set (``versus_baseline_answers``; every held-out prompt needs an answer in the file);
3. judge agreement with gold (issue 8's figure): the starting policy as pairwise self-judge,
   with and without the reference, on pairs of held-out answers gold separates
   (``selfimprove.agreement``);
4. writes ``evaluate/self_improve.json`` (all of it), ``evaluate/outputs/{arm}.jsonl`` (start
   and end answers with gold scores: the report's pattern counts and samples read them) and
   ``evaluate/summary.json`` — each atomically.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from judgelab.engines.base import Engine
from judgelab.judging.samples import prompt_text
from judgelab.phases.stages import plan_arms
from judgelab.selfimprove.agreement import agreement_with_gold, answers_of, gold_pairs
from judgelab.selfimprove.evaluate import WIN_RATE_FILE
from judgelab.selfimprove.files import SUMMARY, read_json
from judgelab.selfimprove.prompts import PromptRow, load_policy_rows
from judgelab.selfimprove.versus_reference import reference_win_rates, win_rates_against
from judgelab.spec.experiment import Experiment
from judgelab.units.baseline_answers import load_baseline_answers, resolve_baseline_path
from judgelab.units.evaluate import EvaluateSummary, evaluate_dir
from judgelab.units.evaluate_judges import convert_judges_json
from judgelab.units.evaluate_outputs import EvaluateError
from judgelab.units.evaluate_results import write_json
from judgelab.units.gold import GoldLabeller
from judgelab.units.jsonio import write_jsonl_atomic
from judgelab.units.progress import ProgressFn
from judgelab.units.responses import Cancelled

SELF_IMPROVE_FILE = "self_improve.json"


def evaluate_self_improve(
    experiment: Experiment,
    run_dir: Path,
    out_dir: Path,
    gold: GoldLabeller | None,
    progress: ProgressFn,
    judge_engine_factory: Callable[[], Engine] | None = None,
    cancelled: threading.Event | None = None,
) -> dict[str, Any]:
    """Write ``out_dir``'s files (see the module doc); returns ``self_improve.json``'s content."""
    spec = experiment.spec
    arm_names = [arm.name for arm in plan_arms(spec)]
    summaries, records = _read_arms(run_dir, arm_names)
    _, held_out = load_policy_rows(run_dir, experiment)
    baseline = _baseline_answers(spec.evaluation.baseline_answers, held_out)

    def check(done: int, note: str) -> None:
        progress(done, 3, note)
        if cancelled is not None and cancelled.is_set():
            raise Cancelled("Evaluate stopped")

    check(0, "versus reference and baseline answers")
    versus = _versus_references(held_out, records, gold, spec.evaluation.seed)
    versus_baseline = None
    if baseline is not None and gold is not None and records:
        label, answers = baseline
        versus_baseline = win_rates_against(
            held_out, answers, records, gold, label, seed=spec.evaluation.seed
        )
    check(1, "judge agreement with gold")
    agreement = _agreement(held_out, records, judge_engine_factory, experiment)
    check(2, "writing")
    doc: dict[str, Any] = {
        "study": "dpo-self-judge",
        "baseline": "starting policy",
        "prompts": len(held_out),
        "arms": {arm: _arm_doc(summaries[arm], records.get(arm)) for arm in arm_names},
        "versus_reference": versus,
        "versus_baseline_answers": versus_baseline,
        "judge_agreement": agreement,
        "notes": [],
    }
    for arm, record in records.items():
        write_jsonl_atomic(
            out_dir / "outputs" / f"{arm}.jsonl", _output_rows(arm, held_out, record)
        )
    write_json(out_dir / SELF_IMPROVE_FILE, doc)
    progress(3, 3, "done")
    return doc


def run_evaluate_self_improve(
    experiment: Experiment,
    run_dir: Path,
    gold_address: str,
    report: ProgressFn,
    factory: Callable[[], Engine] | None,
    cancelled: threading.Event | None,
    started: float,
) -> EvaluateSummary:
    """Evaluate for dpo-self-judge through the gold annotator at ``gold_address``."""
    from judgelab.units.gold_grpc import GrpcGold

    out_dir = evaluate_dir(run_dir)
    gold = GrpcGold(gold_address, experiment.metadata.name)
    try:
        doc = evaluate_self_improve(experiment, run_dir, out_dir, gold, report, factory, cancelled)
    finally:
        gold.close()
    judges_json = convert_judges_json(run_dir, experiment, {})  # an external judge's study
    arms: dict[str, dict[str, Any]] = doc["arms"]
    starts = [a["gold_start_mean"] for a in arms.values() if a["gold_start_mean"] is not None]
    summary = EvaluateSummary(
        prompts=doc["prompts"],
        samples_per_prompt=experiment.spec.evaluation.samples_per_prompt,
        versions={arm: len(a.get("rounds") or ()) or 1 for arm, a in arms.items()},
        gold_initial=starts[0] if starts else None,
        gold_mean={arm: a["gold_end_mean"] for arm, a in arms.items()},
        win_rate={arm: (a["win_rate"] or {}).get("rate") for arm, a in arms.items()},
        skipped={},
        notes={},
        files={
            "self_improve": out_dir / SELF_IMPROVE_FILE,
            **{f"outputs/{arm}": out_dir / "outputs" / f"{arm}.jsonl" for arm in arms},
        },
        seconds=time.monotonic() - started,
        judges_json=judges_json,
    )
    write_json(out_dir / "summary.json", summary.to_json())
    sys.stderr.write(summary.format() + "\n")
    return summary


def _read_arms(
    run_dir: Path, arms: Sequence[str]
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """(arm -> summary.json, arm -> gold_win_rate.json where gold evaluated it)."""
    summaries: dict[str, dict[str, Any]] = {}
    records: dict[str, dict[str, Any]] = {}
    for arm in arms:
        arm_dir = run_dir / "arms" / arm
        if not (arm_dir / SUMMARY).is_file():
            raise EvaluateError(f"{arm_dir / SUMMARY} is missing: TrainPolicy did not finish {arm}")
        summaries[arm] = read_json(arm_dir / SUMMARY)
        if (arm_dir / WIN_RATE_FILE).is_file():
            records[arm] = read_json(arm_dir / WIN_RATE_FILE)
    return summaries, records


def _arm_doc(summary: Mapping[str, Any], record: Mapping[str, Any] | None) -> dict[str, Any]:
    training = summary.get("training") or {}
    doc: dict[str, Any] = {
        "kind": training.get("kind"),
        "win_rate": None,
        "outcomes": None,
        "dropped": None,
        "gold_start_mean": summary.get("gold_start_mean"),
        "gold_end_mean": summary.get("gold_end_mean"),
    }
    if record is not None:
        doc.update({k: record.get(k) for k in ("win_rate", "outcomes", "dropped")})
    if training.get("kind") == "sft-on-references":
        losses = training.get("losses") or []
        doc["sft"] = {
            "examples": training.get("examples"),
            "steps": training.get("steps"),
            "loss_first": losses[0] if losses else None,
            "loss_last": losses[-1] if losses else None,
            "seconds": training.get("seconds"),
        }
    else:
        doc["judge"] = training.get("judge")  # the external judge's name; None: self-judging
        doc["rounds"] = [round_stats(r) for r in training.get("rounds") or ()]
    return doc


def round_stats(summary: Mapping[str, Any]) -> dict[str, Any]:
    """One DPO round's numbers: pairs, ties, comparisons, and TRL's losses and margins."""
    dpo = summary.get("dpo") or {}
    losses, margins = dpo.get("losses") or [], dpo.get("reward_margins") or []
    accuracies = dpo.get("reward_accuracies") or []
    return {
        "round": summary.get("round"),
        "judge": summary.get("judge"),
        "with_reference": summary.get("with_reference"),
        "prompts": summary.get("prompts"),
        "pairs": summary.get("pairs"),
        "ties": summary.get("ties"),
        "mean_score_margin": summary.get("mean_score_margin"),
        "comparisons": summary.get("comparisons"),
        "invalid_comparisons": summary.get("invalid_comparisons"),
        "comparisons_per_second": summary.get("comparisons_per_second"),
        "dpo_steps": dpo.get("steps", 0),
        "dpo_loss_first": losses[0] if losses else None,
        "dpo_loss_last": losses[-1] if losses else None,
        "dpo_reward_margin_mean": _mean(margins),
        "dpo_reward_accuracy_mean": _mean(accuracies),
        "dpo_seconds": dpo.get("seconds"),
    }


def _baseline_answers(
    value: str | None, rows: Sequence[PromptRow]
) -> tuple[str, dict[str, str]] | None:
    """(label, prompt id -> answer) of ``evaluation.baseline_answers``; raises when a held-out
    prompt has no answer (before any gold call)."""
    if value is None:
        return None
    answers = load_baseline_answers(resolve_baseline_path(value))
    texts = answers.answers_for(rows)
    return answers.label, {row.id: text for row, text in zip(rows, texts, strict=True)}


def _versus_references(
    rows: Sequence[PromptRow],
    records: Mapping[str, Mapping[str, Any]],
    gold: GoldLabeller | None,
    seed: int,
) -> dict[str, Any] | None:
    if gold is None or not records or not any(row.reference for row in rows):
        return None
    return reference_win_rates(rows, records, gold, seed=seed)


def _agreement(
    rows: Sequence[PromptRow],
    records: Mapping[str, Mapping[str, Any]],
    factory: Callable[[], Engine] | None,
    experiment: Experiment,
) -> dict[str, Any]:
    pairs = gold_pairs(rows, answers_of(records))
    result: dict[str, Any] = {
        "judge": "starting policy (the round-1 self-judge), both orders",
        "pairs": len(pairs),
        "with_reference": None,
        "without_reference": None,
    }
    if not pairs:
        result["note"] = "No two held-out answers to a prompt that gold scores apart."
        return result
    engine = factory() if factory is not None else _build_engine(experiment)
    seed = experiment.spec.evaluation.seed
    try:
        if all(row.reference for row in rows):
            result["with_reference"] = agreement_with_gold(engine, pairs, True, seed=seed)
        else:
            result["note"] = "Some held-out prompts have no reference: measured without it only."
        result["without_reference"] = agreement_with_gold(engine, pairs, False, seed=seed)
    finally:
        engine.close()
    return result


def _output_rows(
    arm: str, rows: Sequence[PromptRow], record: Mapping[str, Any]
) -> list[dict[str, Any]]:
    prompts = {row.id: prompt_text(row.prompt) for row in rows}
    result = []
    for stage in ("start", "end"):
        for entry in record.get("answers") or ():
            prompt_id = str(entry["id"])
            for k, answer in enumerate(entry.get(stage) or ()):
                result.append(
                    {
                        "prompt": prompts.get(prompt_id, ""),
                        "response": answer["text"],
                        "stage": stage,
                        "arm": arm,
                        "prompt_id": prompt_id,
                        "sample": k,
                        "gold": answer.get("gold"),
                    }
                )
    return result


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _build_engine(experiment: Experiment) -> Engine:
    from judgelab.engines import build_engine

    return build_engine(experiment.spec.policy.model)
