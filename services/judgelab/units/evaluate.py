"""The Evaluate unit: final outputs of every arm, scored by every judge and by gold.

1. Prompts: the first ``evaluation.heldout_prompts`` (all when unset) of
   ``RUN/annotate/policy_eval.jsonl``.
2. Outputs (``units.evaluate_outputs``): the base policy (version 0) answers them — the start
   outputs; each arm's latest published version (``RUN/EXPERIMENT/policy/ARM/vN``) answers them
   — its end outputs. An arm with no published version keeps the base's answers (said in the
   summary and in ``pairwise.json``'s ``notes``). Sampling: ``policy.generation`` with
   ``evaluation.seed``, ``evaluation.samples_per_prompt`` answers per prompt.
3. Scores (``units.evaluate_scoring``): gold (``GoldAnnotator`` over gRPC) scores the start
   outputs and every arm's end outputs; so does every pointwise proxy judge (``JudgePool.Score``)
   when ``evaluation.cross_judge_matrix`` is on. Pairwise proxy judges are null, with the reason.
   The win rate is against the initial policy, or against ``evaluation.baseline_answers``
   (``units.baseline_answers``: read and matched before any sampling, answers scored by gold).
4. Files (``units.evaluate_results``), each written atomically: ``evaluate/cross_scores.json``,
   ``evaluate/pairwise.json``, ``evaluate/outputs/{arm}.jsonl``, ``evaluate/summary.json``, and
   ``judges.json`` rewritten in the report's shape (``units.evaluate_judges``).

A ``dpo-self-judge`` study has no published policy versions and no proxy judges: its arms were
gold-evaluated in TrainPolicy, and ``units.evaluate_self_improve`` collects and extends that.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from judgelab.engines.base import Engine, SamplingParams
from judgelab.engines.policy_store import PolicyStore, PublishedPolicy, run_policy_root
from judgelab.judging import Sample
from judgelab.spec.experiment import Experiment
from judgelab.spec.policy import DpoSelfJudgeAlgorithm
from judgelab.units.baseline_answers import baseline_against
from judgelab.units.evaluate_judges import convert_judges_json
from judgelab.units.evaluate_outputs import (
    EvalPrompt,
    EvaluateError,
    PolicyOutputs,
    Sampling,
    generate_outputs,
    load_version,
    read_eval_prompts,
)
from judgelab.units.evaluate_results import (
    BASELINE,
    GOLD,
    INITIAL,
    INITIAL_SOURCE,
    cross_scores_doc,
    output_rows,
    pairwise_doc,
    samples_of,
    win_rate,
    write_json,
    write_outputs,
)
from judgelab.units.evaluate_scoring import JudgePoolClient, Unscorable, Verdict, gold_verdicts
from judgelab.units.progress import ProgressFn, Step, stderr_progress
from judgelab.units.responses import Cancelled

__all__ = ["EvaluateError", "EvaluateSummary", "evaluate_dir", "run_evaluate"]

EVALUATE_DIR = "evaluate"
NOT_PUBLISHED = "no published policy version: end outputs are the initial policy's"
PAIRWISE_JUDGE = "pairwise judge: it compares two responses and gives no score for one"
MATRIX_OFF = "evaluation.cross_judge_matrix is off"


@dataclass(frozen=True)
class EvaluateSummary:
    """What one Evaluate run produced; ``files``: what → path written."""

    prompts: int
    samples_per_prompt: int
    versions: Mapping[str, int]  # arm -> evaluated policy version (0: never published)
    gold_initial: float | None  # mean gold score of the starting policy's outputs
    gold_mean: Mapping[str, float | None]  # arm -> mean gold score of its end outputs
    win_rate: Mapping[str, float | None]  # arm -> gold win rate vs baseline (ties half)
    skipped: Mapping[str, str]  # scorer -> why its row is null
    notes: Mapping[str, str]  # arm -> note (e.g. never published)
    files: Mapping[str, Path]
    seconds: float = 0.0
    judges_json: Path | None = field(default=None)
    baseline: str = BASELINE  # what win_rate is against

    def to_json(self) -> dict[str, Any]:
        return {
            "prompts": self.prompts,
            "samples_per_prompt": self.samples_per_prompt,
            "versions": dict(self.versions),
            "gold_initial": self.gold_initial,
            "gold_mean": dict(self.gold_mean),
            "win_rate": dict(self.win_rate),
            "baseline": self.baseline,
            "skipped": dict(self.skipped),
            "notes": dict(self.notes),
            "files": {name: str(path) for name, path in self.files.items()},
            "judges_json": None if self.judges_json is None else str(self.judges_json),
            "seconds": round(self.seconds, 3),
        }

    def format(self) -> str:
        lines = [
            f"evaluate: {self.prompts} prompts x {self.samples_per_prompt} in "
            f"{self.seconds:.1f} s; gold initial {_fmt(self.gold_initial)}"
        ]
        for arm, version in self.versions.items():
            unpublished = "" if version else " (not published)"
            lines.append(
                f"  {arm}: v{version}{unpublished}, gold {_fmt(self.gold_mean.get(arm))}, "
                f"win rate vs {self.baseline} {_fmt(self.win_rate.get(arm))}"
            )
        lines += [f"  {scorer}: not scored ({why})" for scorer, why in self.skipped.items()]
        return "\n".join(lines)


def evaluate_dir(run_dir: Path) -> Path:
    return run_dir / EVALUATE_DIR


def run_evaluate(
    experiment: Experiment,
    run_dir: Path,
    gold_address: str,
    judge_pool_address: str,
    progress: ProgressFn | None = None,
    policy_engine_factory: Callable[[], Engine] | None = None,
    *,
    cancelled: threading.Event | None = None,
) -> EvaluateSummary:
    """Run the Evaluate unit into ``run_dir/evaluate/`` (see the module doc for the steps).

    ``progress(done, total, note)`` gets each step's progress (default: lines on stderr);
    ``policy_engine_factory`` builds the base policy engine (default: from ``policy.model``;
    the unit closes it); ``cancelled`` stops the unit between batches (raises Cancelled).
    """
    started = time.monotonic()
    report = progress if progress is not None else stderr_progress(label="evaluate")
    spec = experiment.spec
    if isinstance(spec.policy.algorithm, DpoSelfJudgeAlgorithm):
        from judgelab.units.evaluate_self_improve import run_evaluate_self_improve

        return run_evaluate_self_improve(
            experiment, run_dir, gold_address, report, policy_engine_factory, cancelled, started
        )
    prompts = read_eval_prompts(run_dir, spec.evaluation.heldout_prompts)
    against, baseline_samples = baseline_against(spec.evaluation.baseline_answers, prompts)
    per_prompt = spec.evaluation.samples_per_prompt
    arms = [arm.name for arm in spec.arms]

    def check() -> None:
        if cancelled is not None and cancelled.is_set():
            raise Cancelled("Evaluate stopped")

    outputs = _generate(experiment, run_dir, prompts, report, policy_engine_factory, check)
    versions = {arm: outputs[arm].version if arm in outputs else 0 for arm in arms}
    sources = {arm: arm if arm in outputs else INITIAL_SOURCE for arm in arms}
    notes = {arm: NOT_PUBLISHED for arm, v in versions.items() if v == 0}
    samples = [s for source in outputs for s in samples_of(source, prompts, outputs[source])]

    verdicts, skipped = _score(
        experiment, samples, baseline_samples, gold_address, judge_pool_address, report, check
    )
    out_dir = evaluate_dir(run_dir)
    cross = cross_scores_doc(verdicts, skipped, sources, prompts, per_prompt)
    cross["policy_versions"] = versions
    pairwise = pairwise_doc(verdicts[GOLD], sources, prompts, per_prompt, notes, against)
    start = (INITIAL_SOURCE, outputs[INITIAL_SOURCE])
    stages = {arm: {"start": start, "end": (src, outputs[src])} for arm, src in sources.items()}
    rows = {arm: output_rows(arm, prompts, stages[arm], verdicts[GOLD]) for arm in sources}
    write_outputs(out_dir / "outputs", rows)
    files = {"cross_scores": out_dir / "cross_scores.json", "pairwise": out_dir / "pairwise.json"}
    write_json(files["cross_scores"], cross)
    write_json(files["pairwise"], pairwise)
    judge_costs = {name: list(table.values()) for name, table in verdicts.items() if name != GOLD}
    judges_json = convert_judges_json(run_dir, experiment, judge_costs)
    summary = EvaluateSummary(
        prompts=len(prompts),
        samples_per_prompt=per_prompt,
        versions=versions,
        gold_initial=cross[INITIAL][GOLD],
        gold_mean=cross["scores"][GOLD],
        win_rate={arm: win_rate(outcomes) for arm, outcomes in pairwise["arms"].items()},
        skipped=skipped,
        notes=notes,
        files={**files, **{f"outputs/{arm}": out_dir / "outputs" / f"{arm}.jsonl" for arm in arms}},
        seconds=time.monotonic() - started,
        judges_json=judges_json,
        baseline=against.label,
    )
    write_json(out_dir / "summary.json", summary.to_json())
    sys.stderr.write(summary.format() + "\n")
    return summary


def _generate(
    experiment: Experiment,
    run_dir: Path,
    prompts: list[EvalPrompt],
    report: ProgressFn,
    factory: Callable[[], Engine] | None,
    check: Callable[[], None],
) -> dict[str, PolicyOutputs]:
    """Outputs of the base policy ("initial") and of each arm with a published version."""
    spec = experiment.spec
    stores = {arm.name: PolicyStore(run_policy_root(run_dir, arm.name)) for arm in spec.arms}
    latest = {arm: store.latest_version() for arm, store in stores.items()}
    published = [arm for arm, version in latest.items() if version > 0]
    engine = factory() if factory is not None else _build_engine(experiment)
    generation = spec.policy.generation
    per_prompt = spec.evaluation.samples_per_prompt
    sampling = Sampling(
        SamplingParams(
            max_new_tokens=generation.max_new_tokens,
            temperature=generation.temperature,
            top_p=generation.top_p,
            seed=spec.evaluation.seed,
        ),
        per_prompt,
        batch_prompts=max(1, spec.policy.model.max_batch_size // per_prompt),
    )
    step = Step("generate", len(prompts) * (1 + len(published)), report)
    base = PublishedPolicy.base(spec.policy.model.name)
    try:
        outputs = {INITIAL_SOURCE: generate_outputs(engine, prompts, sampling, base, step, check)}
        for arm in published:
            info, arm_engine = load_version(engine, stores[arm], latest[arm])
            try:
                outputs[arm] = generate_outputs(arm_engine, prompts, sampling, info, step, check)
            finally:
                arm_engine.close()
    finally:
        engine.close()
    return outputs


def _score(
    experiment: Experiment,
    samples: list[Sample],
    gold_only: list[Sample],
    gold_address: str,
    judge_pool_address: str,
    report: ProgressFn,
    check: Callable[[], None],
) -> tuple[dict[str, dict[str, Verdict]], dict[str, str]]:
    """(scorer -> sample id -> verdict, scorer -> why it could not score); ``gold_only``:
    samples only gold scores (the baseline answers)."""
    spec = experiment.spec
    name = experiment.metadata.name
    matrix = spec.evaluation.cross_judge_matrix
    pointwise = [j.name for j in spec.judges if matrix and j.protocol == "pointwise"]
    skipped = {
        j.name: MATRIX_OFF if not matrix else PAIRWISE_JUDGE
        for j in spec.judges
        if j.name not in pointwise
    }
    step = Step("score", len(samples) * (1 + len(pointwise)) + len(gold_only), report)

    def advance(count: int) -> None:
        step.advance(count)
        check()

    verdicts = {GOLD: gold_verdicts(gold_address, name, [*samples, *gold_only], advance)}
    client = JudgePoolClient(judge_pool_address, name)
    try:
        for judge in pointwise:
            before = step.done
            try:
                verdicts[judge] = client.score(judge, samples, advance)
            except Unscorable as reason:
                skipped[judge] = str(reason)
                step.advance(before + len(samples) - step.done)  # its share counts as done
                sys.stderr.write(f"[evaluate] judge {judge!r} not scored: {reason}\n")
    finally:
        client.close()
    return verdicts, skipped


def _build_engine(experiment: Experiment) -> Engine:
    from judgelab.engines import build_engine

    return build_engine(experiment.spec.policy.model)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"
