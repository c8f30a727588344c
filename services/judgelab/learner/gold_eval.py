"""Gold evaluation in the learner: the current policy's answers to held-out prompts, scored by
the gold annotator and by the arm's proxy judge (both over gRPC).

The learner's own in-memory policy generates (LoRA adapters active, dropout off), with the
policy's temperature / top-p / max tokens and the fixed ``evaluation.seed``: the same prompts
and seed every time, so the curve moves only with the weights. The result is the ``eval`` field
of the step's ``steps.jsonl`` line, in the report's schema (``gold_reward_mean``,
``proxy_reward_mean``, ``samples``), plus both means normalised to [0, 1] by their judges'
scales (``gold_reward``, ``proxy_reward``) for the hacking detector. Gold outputs the gold judge
could not score are left out of the mean (``gold_invalid`` counts them); an invalid proxy output
counts 0, as the reward the policy is trained on does. Empty answers are not sent (the services
refuse them): both scores null, counted in ``gold_invalid`` and ``empty_responses``. Pairwise
proxy judges give no pointwise score: their ``proxy`` is null.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from judgelab.engines.base import ChatMessage, SamplingParams
from judgelab.engines.transformers_engine import TransformersEngine
from judgelab.learner.eval_clients import EvalItem, GoldScorer, JudgeScorer
from judgelab.spec.experiment import Experiment

Scale = tuple[float, float]


class Scorer(Protocol):
    def score(self, items: Sequence[EvalItem]) -> list[float | None]: ...


@dataclass(frozen=True)
class HeldOutPrompt:
    id: str
    prompt: str | list[ChatMessage]
    reference: str | None = None
    rubric: str | None = None  # the gold judge's rubric (proxy judges with gold rubrics)

    @property
    def text(self) -> str:
        """The prompt as one text (the last user turn of a chat)."""
        if isinstance(self.prompt, str):
            return self.prompt
        users = [m.content for m in self.prompt if m.role == "user"]
        return users[-1] if users else ""


def load_heldout(path: Path, limit: int | None = None) -> list[HeldOutPrompt]:
    """The first ``limit`` prompts of an Annotate ``policy_eval.jsonl`` (all when None)."""
    prompts: list[HeldOutPrompt] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            raw = row["prompt"]
            prompt = _prompt(raw)
            prompts.append(
                HeldOutPrompt(str(row["id"]), prompt, row.get("reference"), row.get("rubric"))
            )
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(f"{path}:{number}: not a held-out prompt record: {error}") from error
        if limit is not None and len(prompts) >= limit:
            break
    if not prompts:
        raise ValueError(f"{path} holds no held-out prompts")
    return prompts


@dataclass(frozen=True)
class EvalSettings:
    sampling: SamplingParams  # seed set: the same samples for the same weights
    samples_per_prompt: int = 1
    gold_scale: Scale = (0.0, 9.0)
    proxy_scale: Scale | None = (0.0, 9.0)  # None: the proxy gives no pointwise score
    max_batch_size: int = 8


class GoldEvaluator:
    """``evaluator(step, trainer)`` -> the step's ``eval`` record (see the module doc)."""

    def __init__(
        self,
        prompts: Sequence[HeldOutPrompt],
        tokenizer: Any,
        gold: Scorer,
        proxy: Scorer | None,
        settings: EvalSettings,
    ) -> None:
        self.prompts = list(prompts)
        self.tokenizer = tokenizer
        self.gold = gold
        self.proxy = proxy
        self.settings = settings

    def __call__(self, step: int, policy: Any) -> dict[str, Any]:
        started = time.perf_counter()
        asked = self._asked()
        responses = self._generate(policy, asked)
        items = [
            EvalItem(f"step{step}:{i}:{p.id}", p.prompt, text, p.reference, p.rubric)
            for i, (p, text) in enumerate(zip(asked, responses, strict=True))
        ]
        gold, proxy = self._score(items)
        samples = [
            {"prompt": p.text, "response": text, "gold": g, "proxy": x}
            for p, text, g, x in zip(asked, responses, gold, proxy, strict=True)
        ]
        return summarise(samples, self.settings, time.perf_counter() - started)

    def answers(self, policy: Any) -> list[str]:
        """The answers alone, unscored (what ranks > 0 generate along under FSDP)."""
        return self._generate(policy, self._asked())

    def _asked(self) -> list[HeldOutPrompt]:
        return [p for p in self.prompts for _ in range(self.settings.samples_per_prompt)]

    def _score(self, items: list[EvalItem]) -> tuple[list[float | None], list[float | None]]:
        """Gold and proxy scores; None for empty answers (the services refuse them)."""
        answered = [i for i in items if i.response.strip()]
        gold = dict(zip((i.id for i in answered), self.gold.score(answered), strict=True))
        proxy: dict[str, float | None] = {}
        if self.proxy is not None:
            proxy = dict(zip((i.id for i in answered), self.proxy.score(answered), strict=True))
        return [gold.get(i.id) for i in items], [proxy.get(i.id) for i in items]

    def _generate(self, policy: Any, prompts: Sequence[HeldOutPrompt]) -> list[str]:
        module = getattr(policy, "policy", policy)  # a GrpoTrainer, or the model itself
        model = module.get_base_model() if hasattr(module, "get_base_model") else module
        was_training = module.training
        try:  # the engine puts the model in eval mode (no dropout); training mode comes back
            engine = TransformersEngine(
                model, self.tokenizer, max_batch_size=self.settings.max_batch_size
            )
            conversations = [_conversation(p) for p in prompts]
            generations = engine.generate(conversations, self.settings.sampling)
        finally:
            module.train(was_training)
        return [g.text for g in generations]


def summarise(
    samples: list[dict[str, Any]], settings: EvalSettings, seconds: float
) -> dict[str, Any]:
    """The ``eval`` record of scored samples."""
    gold = [s["gold"] for s in samples if s["gold"] is not None]
    proxy = [s["proxy"] for s in samples if s["proxy"] is not None]
    gold_mean = statistics.fmean(gold) if gold else None
    proxy_mean = statistics.fmean(proxy) if proxy else None
    return {
        "gold_reward_mean": gold_mean,
        "proxy_reward_mean": proxy_mean,
        "gold_reward": _normalised(gold_mean, settings.gold_scale),
        "proxy_reward": _normalised(proxy_mean, settings.proxy_scale),
        "gold_invalid": len(samples) - len(gold),
        "empty_responses": sum(1 for s in samples if not s["response"].strip()),
        "seconds": seconds,
        "samples": samples,
    }


def build_gold_evaluator(
    experiment: Experiment,
    arm: str,
    tokenizer: Any,
    heldout_path: Path,
    gold_address: str,
    judge_pool_address: str | None,
) -> GoldEvaluator:
    """The evaluator of ``arm`` from the spec: prompts, sampling, scales, the two scorers."""
    spec = experiment.spec
    evaluation, generation = spec.evaluation, spec.policy.generation
    judge_name = next(a.judge for a in spec.arms if a.name == arm)
    judge = next(j for j in spec.judges if j.name == judge_name)
    pointwise = judge.protocol == "pointwise"
    name = experiment.metadata.name
    proxy = (
        JudgeScorer(judge_pool_address, judge_name, name)
        if judge_pool_address and pointwise
        else None
    )
    settings = EvalSettings(
        sampling=SamplingParams(
            max_new_tokens=generation.max_new_tokens,
            temperature=generation.temperature,
            top_p=generation.top_p,
            seed=evaluation.seed,
        ),
        samples_per_prompt=evaluation.samples_per_prompt,
        gold_scale=(spec.gold.scale.min, spec.gold.scale.max),
        proxy_scale=(judge.scale.min, judge.scale.max) if pointwise else None,
        max_batch_size=spec.policy.model.max_batch_size,
    )
    prompts = load_heldout(heldout_path, evaluation.heldout_prompts)
    return GoldEvaluator(prompts, tokenizer, GoldScorer(gold_address, name), proxy, settings)


def _prompt(raw: Any) -> str | list[ChatMessage]:
    if isinstance(raw, str):
        return raw
    return [ChatMessage(turn["role"], turn["content"]) for turn in raw]


def _conversation(prompt: HeldOutPrompt) -> list[ChatMessage]:
    if isinstance(prompt.prompt, str):
        return [ChatMessage("user", prompt.prompt)]
    return list(prompt.prompt)


def _normalised(value: float | None, scale: Scale | None) -> float | None:
    if value is None or scale is None or scale[1] <= scale[0]:
        return None
    return (value - scale[0]) / (scale[1] - scale[0])
