"""The GRPO stage of a judge's ``sft+grpo`` recipe: its items, the run, and the judge before/after.

Items are the judge-training rows as the judge sees them when judging (its own prompt, no
prefill): one per validly gold-labelled row for pointwise judges; for pairwise judges one per
gold pair (two responses to one prompt with different gold scores) and display order, so both
orders are trained. Rows that cannot be items are reported with their reason, never dropped
silently.

The stage records, for training.json's ``"grpo"``: its settings, per-step reward mean, invalid
rate (strict: the judge's own outputs without a verdict), forced rate (those given a forced
verdict line, see ``judge_grpo_forcing``; judges that force verdicts at inference only) and the
rest of each step's record, its cost in seconds, and the judge's evaluation on
judge_eval before it (after SFT) and after it. ``strict_invalid_rate`` there is the share of
judge_eval verdicts the judge's own output did not give, budget forcing aside: a reasoning judge
cut off by its budget gets its verdict forced (and counts as valid in ``invalid_rate``), but its
output had none.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from judgelab.engines.adapters import merged_engine
from judgelab.engines.base import ChatMessage, Engine, Generation
from judgelab.engines.transformers_engine import TransformersEngine
from judgelab.judging import JudgeConfig, PairwiseJudge, PointwiseJudge
from judgelab.judging.config import FINAL_LINE_TOKENS
from judgelab.judging.pairwise import BOTH_ORDERS
from judgelab.judging.results import PointwiseJudgement
from judgelab.spec.judges import ProxyJudgeSpec
from judgelab.units.gold_rows import GoldRow, sample_of
from judgelab.units.judge_eval import JudgeEvaluation, evaluate_judge, gold_pairs
from judgelab.units.judge_grpo import (
    GrpoItem,
    GrpoRun,
    VerdictForcing,
    preference_reward,
    score_reward,
    train_judge_grpo,
)
from judgelab.units.progress import ProgressFn


@dataclass(frozen=True)
class StrictEvaluation:
    """A judge's evaluation and the share of its verdicts that budget forcing had to supply."""

    evaluation: JudgeEvaluation
    forced_rate: float

    @property
    def strict_invalid_rate(self) -> float:
        return self.evaluation.invalid_rate + self.forced_rate

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe, as ``JudgeEvaluation.to_dict``: nan (no examples) becomes null."""
        return {
            **self.evaluation.to_dict(),
            "forced_rate": json_number(self.forced_rate),
            "strict_invalid_rate": json_number(self.strict_invalid_rate),
        }


def json_number(value: float) -> float | None:
    return None if math.isnan(value) else value


@dataclass(frozen=True)
class GrpoStage:
    """The GRPO-trained model (trained in place), training.json's record, the SFT judge's eval."""

    model: Any
    record: dict[str, Any]
    after_sft: StrictEvaluation


def run_grpo_stage(
    spec: ProxyJudgeSpec,
    config: JudgeConfig,
    base: TransformersEngine,
    sft_model: Any,
    rows: tuple[Sequence[GoldRow], Sequence[GoldRow]],
    seed: int,
    progress: ProgressFn | None = None,
) -> GrpoStage:
    """GRPO on ``sft_model`` (rows: judge_train, judge_eval); the SFT judge is evaluated first."""
    train_rows, eval_rows = rows
    started = time.perf_counter()
    sft_engine = merged_engine(copy.deepcopy(sft_model), base)
    after_sft = evaluate_strict(sft_engine, config, eval_rows, progress=progress)
    eval_s = time.perf_counter() - started
    prompter = _judge(base, config)
    limit = rollout_limit(base, config)
    items, skipped = grpo_items(prompter, train_rows, base, limit)
    if not items:
        raise ValueError(
            f"judge {spec.name!r}: no judge-training item for GRPO ({len(train_rows)} rows, "
            f"skipped: {dict(Counter(why for _, why in skipped))})"
        )
    settings = spec.training.grpo
    forcing = None
    if settings.force_verdict and config.forces_verdict:
        forcing = VerdictForcing.for_scale(config.scale, settings.forced_penalty)
    run = train_judge_grpo(
        sft_model,
        base,
        items,
        settings,
        spec.training.lora,
        limit,
        seed=seed,
        progress=progress,
        forcing=forcing,
    )
    record = _record(run, settings.model_dump(), items, skipped, limit)
    record["eval_seconds_after_sft"] = eval_s
    record["after_sft"] = after_sft.to_dict()
    return GrpoStage(model=run.model, record=record, after_sft=after_sft)


def grpo_items(
    judge: PointwiseJudge | PairwiseJudge,
    rows: Sequence[GoldRow],
    engine: Engine,
    max_new_tokens: int,
) -> tuple[list[GrpoItem], list[tuple[str, str]]]:
    """The GRPO items of ``rows`` for ``judge``, and the (row or pair id, reason) left out."""
    if isinstance(judge, PairwiseJudge):
        candidates, skipped = _pairwise_items(judge, rows)
    else:
        candidates, skipped = _pointwise_items(judge, rows)
    items = []
    for item in candidates:
        if engine.count_tokens(item.conversation) + max_new_tokens > engine.context_length:
            skipped.append((item.id, "too_long"))
        else:
            items.append(item)
    return items, skipped


def rollout_limit(engine: Engine, config: JudgeConfig) -> int:
    """Most tokens a sampled verdict may have: the judge's own limit when it has one."""
    limit = config.generation_limit
    if limit is not None:
        return limit
    return max(FINAL_LINE_TOKENS, engine.context_length // 4)


def evaluate_strict(
    engine: Engine,
    config: JudgeConfig,
    rows: Sequence[GoldRow],
    trained: bool = True,
    progress: ProgressFn | None = None,
) -> StrictEvaluation:
    """``evaluate_judge`` of the judge on ``engine``, counting the verdicts forcing supplied."""
    if config.protocol == "pairwise":
        pairwise = PairwiseJudge(engine, config)
        return StrictEvaluation(evaluate_judge(pairwise, rows, trained, progress), 0.0)
    judge = _ForcedCounter(engine, config)
    evaluation = evaluate_judge(judge, rows, trained, progress)
    return StrictEvaluation(evaluation, judge.forced / max(evaluation.examples, 1))


class _ForcedCounter(PointwiseJudge):
    """A pointwise judge that counts the verdicts budget forcing supplied."""

    def __init__(self, engine: Engine, config: JudgeConfig) -> None:
        super().__init__(engine, config)
        self.forced = 0

    def _forced(
        self, conversation: list[ChatMessage], cut: Generation, judged: PointwiseJudgement
    ) -> PointwiseJudgement:
        verdict = super()._forced(conversation, cut, judged)
        self.forced += verdict.valid
        return verdict


def _judge(engine: Engine, config: JudgeConfig) -> PointwiseJudge | PairwiseJudge:
    if config.protocol == "pairwise":
        return PairwiseJudge(engine, config)
    return PointwiseJudge(engine, config)


def _pointwise_items(
    judge: PointwiseJudge, rows: Sequence[GoldRow]
) -> tuple[list[GrpoItem], list[tuple[str, str]]]:
    config = judge.config
    items: list[GrpoItem] = []
    skipped: list[tuple[str, str]] = []
    for row in rows:
        reason = _gold_problem(config, row)
        if reason is not None:
            skipped.append((row.id, reason))
            continue
        assert row.score is not None
        reward = functools.partial(_score_reward, gold=row.score, config=config)
        items.append(GrpoItem(row.id, judge.conversation(sample_of(row)), reward))
    return items, skipped


def _pairwise_items(
    judge: PairwiseJudge, rows: Sequence[GoldRow]
) -> tuple[list[GrpoItem], list[tuple[str, str]]]:
    usable = [row for row in rows if _gold_problem(judge.config, row) is None]
    skipped = [(row.id, why) for row in rows if (why := _gold_problem(judge.config, row))]
    pairs, gold = gold_pairs(usable)
    items = []
    for pair, a_wins in zip(pairs, gold, strict=True):
        for order in BOTH_ORDERS:
            label = "A" if a_wins == (order == "AB") else "B"
            reward = functools.partial(_preference_reward, gold=label)
            items.append(GrpoItem(f"{pair.id}:{order}", judge.conversation(pair, order), reward))
    return items, skipped


def _score_reward(text: str, finish_reason: str, *, gold: int, config: JudgeConfig) -> float:
    return score_reward(text, finish_reason, gold, config.scale)


def _preference_reward(text: str, finish_reason: str, *, gold: str) -> float:
    return preference_reward(text, finish_reason, gold)


def _gold_problem(config: JudgeConfig, row: GoldRow) -> str | None:
    if not row.valid:
        return f"gold_invalid:{row.invalid_reason or 'unknown'}"
    if row.score is None:
        return "gold_score_missing"
    if config.protocol == "pointwise" and row.score not in config.scale:
        return "gold_score_off_scale"
    if config.reference_guided and not row.reference:
        return "reference_missing"
    return None


def _record(
    run: GrpoRun,
    settings: dict[str, Any],
    items: list[GrpoItem],
    skipped: list[tuple[str, str]],
    limit: int,
) -> dict[str, Any]:
    steps = [dataclasses.asdict(step) for step in run.steps]
    return {
        "settings": {**settings, "max_new_tokens": limit},
        "items": len(items),
        "skipped": dict(Counter(why for _, why in skipped)),
        "skipped_rows": [{"id": row, "reason": why} for row, why in skipped],
        "steps": len(steps),
        "reward_mean": [step["reward_mean"] for step in steps],
        "invalid_rate": [step["invalid_rate"] for step in steps],
        "forced_rate": [step["forced_rate"] for step in steps],
        "step_log": steps,
        "seconds": run.seconds,
    }
