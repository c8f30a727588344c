"""GRPO for reasoning judges, on the policy learner's machinery (``learner.trainer.GrpoTrainer``).

Each step takes ``prompts_per_step`` judge-training items (a seeded shuffle, cycled), samples
G = ``num_generations`` verdicts per item from the current judge at the spec's temperature (token
ids and log-probs from the transformers engine), scores each against gold with a verifiable
reward and runs one GrpoTrainer step: group-normalised advantages, the clipped token-level loss,
AdamW. The judge goes on training the adapters its SFT stage left (the trainer's KL reference is
the judge as GRPO found it). One group per micro-batch keeps memory at G sequences.

Rewards, read with the judge's own strict parser (``judging.parsing``), so a verdict only counts
where judging would find it:

* pointwise: ``(M - (ŝ - s)²) / M`` with ``M = (max - min)²``;
* pairwise: 1 when the preferred label is gold's, 0 otherwise;
* both: -1 when there is no valid verdict (unparseable, truncated, empty, off the scale).

With a ``VerdictForcing`` (pointwise judges that force verdicts at inference, see
``judge_grpo_forcing``) a sample without a valid verdict gets one appended and is rewarded
for it, minus a penalty; ``invalid_rate`` stays strict (the judge's own outputs without a
verdict) and ``forced_rate`` counts the forced ones.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from judgelab.engines.base import ChatMessage, SamplingParams
from judgelab.engines.chat import render_prompt
from judgelab.engines.mixed_precision import MixedPrecision
from judgelab.engines.transformers_engine import TransformersEngine
from judgelab.judging.parsing import parse_preference, parse_score
from judgelab.judging.scale import Scale
from judgelab.learner.batch import TrainGroup
from judgelab.learner.distributed import DistInfo
from judgelab.learner.settings import LoraSettings, TrainerSettings
from judgelab.learner.steplog import StepLog
from judgelab.learner.trainer import GrpoTrainer
from judgelab.spec.judges import JudgeGrpoSpec
from judgelab.spec.training import LoraSpec
from judgelab.units.judge_grpo_forcing import (
    INVALID_REWARD,
    RewardFn,
    Rollout,
    VerdictForcing,
    rollout,
)
from judgelab.units.progress import ProgressFn


def score_reward(text: str, finish_reason: str, gold: int, scale: Scale) -> float:
    """``(M - (ŝ - s)²) / M``, ``M = (max - min)²``; -1 when the output has no valid score."""
    parsed = parse_score(text, scale, finish_reason)
    if parsed.verdict is None:
        return INVALID_REWARD
    worst = (scale.max - scale.min) ** 2
    return (worst - (int(parsed.verdict) - gold) ** 2) / worst


def preference_reward(text: str, finish_reason: str, gold: str) -> float:
    """1 when the verdict names ``gold`` ("A" or "B"), 0 when the other; -1 when none is valid."""
    parsed = parse_preference(text, finish_reason)
    if parsed.verdict is None:
        return INVALID_REWARD
    return 1.0 if parsed.verdict == gold else 0.0


@dataclass(frozen=True)
class GrpoItem:
    """One judge-training prompt and how a verdict on it is rewarded."""

    id: str
    conversation: list[ChatMessage]
    reward: RewardFn


@dataclass(frozen=True)
class GrpoStepRecord:
    """What one judge GRPO step did (rewards over its prompts_per_step x G verdicts)."""

    step: int
    reward_mean: float
    reward_std: float
    #: Share of verdicts whose own output had no valid verdict (strict; forced ones included).
    invalid_rate: float
    #: Share of verdicts that got their verdict line forced (and its reward, less the penalty).
    forced_rate: float
    loss: float
    kl: float
    grad_norm: float
    completion_tokens_mean: float
    #: Groups whose G rewards were all equal: advantage 0, no learning signal.
    flat_groups: int
    generate_s: float
    train_s: float


@dataclass(frozen=True)
class GrpoRun:
    """The trained model (the one given, trained in place) and the per-step records."""

    model: Any
    steps: list[GrpoStepRecord]
    seconds: float


def trainer_settings(
    spec: JudgeGrpoSpec, lora: LoraSpec, seed: int, mixed_precision: MixedPrecision = "no"
) -> TrainerSettings:
    """The learner's settings for a judge: the spec's G, lr, beta and temperature, on-policy."""
    return TrainerSettings(
        group_size=spec.num_generations,
        learning_rate=spec.learning_rate,
        beta=spec.beta,
        gradient_accumulation_steps=spec.prompts_per_step,  # one group per micro-batch
        max_staleness=0,  # every step samples from the current weights
        temperature=spec.temperature,
        seed=seed,
        lora=LoraSettings.from_spec(lora),
        mixed_precision=mixed_precision,
    )


def train_judge_grpo(
    model: Any,
    base: TransformersEngine,
    items: Sequence[GrpoItem],
    spec: JudgeGrpoSpec,
    lora: LoraSpec,
    max_new_tokens: int,
    seed: int = 0,
    progress: ProgressFn | None = None,
    forcing: VerdictForcing | None = None,
) -> GrpoRun:
    """Train ``model`` (the SFT judge, modified in place) with ``spec.steps`` GRPO steps;
    ``forcing``: how samples without a verdict get one (None: they get -1)."""
    if not items:
        raise ValueError("judge GRPO needs at least one judge-training item")
    started = time.perf_counter()
    tokenizer = base.tokenizer
    settings = trainer_settings(spec, lora, seed, base.mixed_precision)
    # One process, also under torchrun (TrainJudges runs on rank 0 alone): no data parallelism.
    trainer = GrpoTrainer(model, tokenizer.pad_token_id, settings, dist_info=DistInfo())
    sampler = base.sibling(trainer.policy, name=f"{base.name}+grpo")
    batches = _batches(items, spec.prompts_per_step, seed)
    records: list[GrpoStepRecord] = []
    for step in range(spec.steps):
        chosen = next(batches)
        trainer.policy.eval()  # verdicts are sampled without dropout
        generated = time.perf_counter()
        groups, rollouts = _rollouts(
            sampler, chosen, (step, trainer.version), spec, max_new_tokens, (seed, forcing)
        )
        generate_s = time.perf_counter() - generated
        trainer.policy.train()
        log = trainer.step(groups)
        records.append(_record(step + 1, rollouts, spec.num_generations, log, generate_s))
        if progress is not None:
            last = records[-1]
            note = (
                f"grpo reward {last.reward_mean:.3f} invalid {last.invalid_rate:.2f} "
                f"forced {last.forced_rate:.2f}"
            )
            progress(step + 1, spec.steps, note)
    trained: Any = trainer.policy
    trained.eval()
    return GrpoRun(model=trained, steps=records, seconds=time.perf_counter() - started)


def _batches(items: Sequence[GrpoItem], size: int, seed: int) -> Iterator[list[GrpoItem]]:
    """Endless batches of ``size`` items: a seeded shuffle, reshuffled on every pass."""
    rng = random.Random(seed)
    queue: list[GrpoItem] = []
    while True:
        batch: list[GrpoItem] = []
        while len(batch) < size:
            if not queue:
                queue = list(items)
                rng.shuffle(queue)
            batch.append(queue.pop())
        yield batch


def _rollouts(
    sampler: TransformersEngine,
    items: list[GrpoItem],
    at: tuple[int, int],
    spec: JudgeGrpoSpec,
    max_new_tokens: int,
    forced: tuple[int, VerdictForcing | None],
) -> tuple[list[TrainGroup], list[Rollout]]:
    """G verdicts per item from the current weights (``at``: step, policy version), rewarded;
    ``forced``: (seed, forcing)."""
    step, version = at
    seed, forcing = forced
    size = spec.num_generations
    params = SamplingParams(
        max_new_tokens=max_new_tokens, temperature=spec.temperature, seed=seed + step
    )
    conversations = [item.conversation for item in items for _ in range(size)]
    generations = sampler.generate(conversations, params)
    rng = random.Random(f"judge-grpo-forcing:{seed}:{step}")
    groups, rollouts = [], []
    for k, item in enumerate(items):
        mine = [
            rollout(sampler, item.conversation, g, item.reward, forcing, rng, spec.temperature)
            for g in generations[k * size : (k + 1) * size]
        ]
        groups.append(_group(f"{step}:{k}:{item.id}", version, sampler, item, mine))
        rollouts.extend(mine)
    return groups, rollouts


def _group(
    group_id: str,
    version: int,
    sampler: TransformersEngine,
    item: GrpoItem,
    rollouts: list[Rollout],
) -> TrainGroup:
    prompt = render_prompt(sampler.tokenizer, item.conversation)
    prompt_ids = sampler.tokenizer(prompt, add_special_tokens=False)["input_ids"]
    return TrainGroup(
        group_id=group_id,
        policy_version=version,
        prompt_ids=tuple(prompt_ids),
        completions=tuple(r.token_ids for r in rollouts),
        rewards=tuple(r.reward for r in rollouts),
    )


def _record(
    step: int,
    rollouts: list[Rollout],
    size: int,
    log: StepLog,
    generate_s: float,
) -> GrpoStepRecord:
    rewards = [r.reward for r in rollouts]
    lengths = [len(r.token_ids) for r in rollouts]
    mean = sum(rewards) / len(rewards)
    variance = sum((r - mean) ** 2 for r in rewards) / max(len(rewards) - 1, 1)
    grouped = [rewards[i : i + size] for i in range(0, len(rewards), size)]
    return GrpoStepRecord(
        step=step,
        reward_mean=mean,
        reward_std=math.sqrt(variance),
        invalid_rate=sum(not r.valid for r in rollouts) / len(rollouts),
        forced_rate=sum(r.forced for r in rollouts) / len(rollouts),
        loss=log.loss,
        kl=log.kl,
        grad_norm=log.grad_norm,
        completion_tokens_mean=sum(lengths) / len(lengths),
        flat_groups=sum(len(set(g)) == 1 for g in grouped),
        generate_s=generate_s,
        train_s=log.times.train,
    )
