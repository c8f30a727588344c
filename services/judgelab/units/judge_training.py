"""The TrainJudges unit: train one proxy judge on the gold labels and measure it before/after.

``run_train_judge`` reads RUN/annotate/judge_{train,eval}.jsonl, evaluates the judge untrained,
runs its recipe, saves the adapter to RUN/judges/<name>/adapter/ (atomically), records
RUN/judges/<name>/training.json, evaluates the trained judge and updates RUN/judges.json.

Recipes: ``none`` (evaluation only), ``sft`` and ``sft+grpo`` (SFT, then GRPO against gold on
the learner's GRPO machinery, see ``judge_grpo``; the SFT judge is evaluated in between and
training.json's ``"grpo"`` records the stage). Pairwise judges train on both display orders of
every gold pair (two responses to one prompt with different gold scores).
"""

from __future__ import annotations

import copy
import dataclasses
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from judgelab.atomic_files import write_dir_atomic
from judgelab.engines import build_engine
from judgelab.engines.adapters import apply_adapter, judge_adapter_dir, merged_engine
from judgelab.engines.transformers_engine import TransformersEngine
from judgelab.judging import JudgeConfig, PairwiseJudge, PointwiseJudge
from judgelab.spec import Experiment
from judgelab.spec.judges import ProxyJudgeSpec
from judgelab.spec.model import ModelSpec
from judgelab.units.gold_rows import (
    JUDGE_EVAL,
    JUDGE_TRAIN,
    GoldRow,
    gold_split_path,
    read_gold_rows,
    require_rubrics,
)
from judgelab.units.judge_eval import JudgeEvaluation, update_judges_json, write_json_atomic
from judgelab.units.judge_grpo_stage import evaluate_strict, json_number, run_grpo_stage
from judgelab.units.judge_sft import Progress, SftResult, build_examples, train_sft
from judgelab.units.judge_sft_pairwise import build_pairwise_examples

GRPO_NOT_RUN = "not run"


@dataclass(frozen=True)
class JudgeTrainingSummary:
    """What the unit did for one judge; ``adapter_dir`` is None when nothing was trained."""

    judge: str
    recipe: str
    examples: int
    skipped: dict[str, int]
    steps: int
    losses: list[float]
    seconds: float
    grpo: str | dict[str, Any]
    adapter_dir: Path | None
    untrained: JudgeEvaluation
    trained: JudgeEvaluation | None
    epochs: int = 0
    skipped_rows: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: Share of judge_eval verdicts the judge's own output did not give (budget forcing aside),
    #: by stage: "untrained", "after_sft" (sft+grpo only), "trained".
    strict_invalid_rate: dict[str, float] = field(default_factory=dict)


def judge_dir(run_dir: Path, name: str) -> Path:
    return run_dir / "judges" / name


def adapter_dir(run_dir: Path, name: str) -> Path:
    """Where a trained judge's LoRA adapter lives (what the judge pool loads)."""
    return judge_adapter_dir(run_dir, name)


def run_train_judge(
    experiment: Experiment,
    run_dir: Path,
    judge_name: str,
    progress: Progress | None = None,
    engine: TransformersEngine | None = None,
) -> JudgeTrainingSummary:
    """Train and evaluate one proxy judge; ``engine`` replaces loading ``spec.model`` (tests)."""
    spec = _judge_spec(experiment, judge_name)
    config = JudgeConfig.from_proxy_spec(spec)
    base = engine if engine is not None else _load_transformers(spec.model)
    eval_rows = read_gold_rows(gold_split_path(run_dir, JUDGE_EVAL))
    recipe = spec.training.recipe or "sft"
    train_rows = [] if recipe == "none" else read_gold_rows(gold_split_path(run_dir, JUDGE_TRAIN))
    require_rubrics(config, eval_rows, JUDGE_EVAL)  # before any model work
    require_rubrics(config, train_rows, JUDGE_TRAIN)
    untrained = evaluate_strict(base, config, eval_rows, trained=False, progress=progress)
    summary = JudgeTrainingSummary(
        judge=spec.name,
        recipe=recipe,
        examples=0,
        skipped={},
        steps=0,
        losses=[],
        seconds=0.0,
        grpo=GRPO_NOT_RUN,
        adapter_dir=None,
        untrained=untrained.evaluation,
        trained=None,
        strict_invalid_rate={"untrained": untrained.strict_invalid_rate},
    )
    if recipe == "none":
        summary = dataclasses.replace(summary, notes=["recipe none"])
        _write_training_json(run_dir, summary)
        update_judges_json(run_dir, [untrained.evaluation])
        return summary
    result, summary = _sft(experiment, spec, config, base, train_rows, summary, progress)
    model = result.model
    stage = None
    if recipe == "sft+grpo":
        seed = experiment.spec.runtime.seed
        rows = (train_rows, eval_rows)
        stage = run_grpo_stage(spec, config, base, model, rows, seed, progress)
        model = stage.model
    lora = spec.training.lora.enabled
    target = adapter_dir(run_dir, spec.name) if lora else judge_dir(run_dir, spec.name) / "model"
    saved = _save_atomic(model, base.tokenizer, target, lora)
    trained = evaluate_strict(merged_engine(model, base), config, eval_rows, progress=progress)
    strict = {**summary.strict_invalid_rate, "trained": trained.strict_invalid_rate}
    grpo: str | dict[str, Any] = GRPO_NOT_RUN
    if stage is not None:
        strict["after_sft"] = stage.after_sft.strict_invalid_rate
        grpo = {
            **stage.record,
            "after": trained.to_dict(),
            "invalid_output_rate": {
                "before": json_number(stage.after_sft.strict_invalid_rate),
                "after": json_number(trained.strict_invalid_rate),
            },
        }
    summary = dataclasses.replace(
        summary,
        trained=trained.evaluation,
        adapter_dir=saved,
        grpo=grpo,
        strict_invalid_rate=strict,
    )
    _write_training_json(run_dir, summary)
    update_judges_json(run_dir, [untrained.evaluation, trained.evaluation])
    return summary


def trained_judge_engine(model: ModelSpec, adapter: Path) -> TransformersEngine:
    """The judge's base model with its trained adapter merged in: what the judge pool serves."""
    return apply_adapter(_load_transformers(model), adapter)


def _load_transformers(model: ModelSpec) -> TransformersEngine:
    engine = build_engine(model)
    if not isinstance(engine, TransformersEngine):
        raise ValueError(
            f"judge model {model.name!r} runs on engine {model.engine!r}; judge training needs "
            "the in-process transformers engine"
        )
    return engine


def _judge_spec(experiment: Experiment, name: str) -> ProxyJudgeSpec:
    for spec in experiment.spec.judges:
        if spec.name == name:
            return spec
    known = ", ".join(j.name for j in experiment.spec.judges) or "none"
    raise ValueError(f"no judge named {name!r} in the experiment (judges: {known})")


def _sft(
    experiment: Experiment,
    spec: ProxyJudgeSpec,
    config: JudgeConfig,
    base: TransformersEngine,
    rows: list[GoldRow],
    summary: JudgeTrainingSummary,
    progress: Progress | None,
) -> tuple[SftResult, JudgeTrainingSummary]:
    """SFT on a copy of the base model (the base stays untouched)."""
    settings = spec.training.sft
    if config.protocol == "pairwise":
        built = build_pairwise_examples(
            PairwiseJudge(base, config), base.tokenizer, rows, settings.max_length
        )
    else:
        built = build_examples(
            PointwiseJudge(base, config), base.tokenizer, rows, settings.max_length
        )
    if not built.examples:
        raise ValueError(
            f"judge {spec.name!r}: no valid gold-labelled example to train on ({len(rows)} rows, "
            f"skipped: {built.skipped_by_reason}); see annotate/summary.json"
        )
    model = copy.deepcopy(base.model)
    with tempfile.TemporaryDirectory(prefix="judge-sft-") as work:
        result = train_sft(
            model,
            base.tokenizer,
            built.examples,
            settings,
            spec.training.lora,
            Path(work),
            seed=experiment.spec.runtime.seed,
            progress=progress,
            mixed_precision=base.mixed_precision,
        )
    return result, dataclasses.replace(
        summary,
        examples=len(built.examples),
        skipped=built.skipped_by_reason,
        skipped_rows=list(built.skipped),
        steps=result.steps,
        losses=result.losses,
        seconds=result.seconds,
        epochs=settings.epochs,
    )


def _save_atomic(model: Any, tokenizer: Any, target: Path, lora: bool) -> Path:
    """The adapter (or the whole model with its tokenizer), written atomically."""

    def fill(staging: Path) -> None:
        model.save_pretrained(str(staging))
        if not lora:
            tokenizer.save_pretrained(str(staging))

    return write_dir_atomic(target, fill)


def _write_training_json(run_dir: Path, summary: JudgeTrainingSummary) -> None:
    record = {
        "judge": summary.judge,
        "recipe": summary.recipe,
        "examples": summary.examples,
        "skipped": summary.skipped,
        "skipped_rows": [{"id": row, "reason": why} for row, why in summary.skipped_rows],
        "epochs": summary.epochs,
        "steps": summary.steps,
        "train_loss": summary.losses,
        "seconds": summary.seconds,
        "grpo": summary.grpo,
        "strict_invalid_rate": {k: json_number(v) for k, v in summary.strict_invalid_rate.items()},
        "adapter_dir": None if summary.adapter_dir is None else str(summary.adapter_dir),
        "untrained": summary.untrained.to_dict(),
        "trained": None if summary.trained is None else summary.trained.to_dict(),
        "notes": summary.notes,
    }
    path = judge_dir(run_dir, summary.judge) / "training.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, record)
