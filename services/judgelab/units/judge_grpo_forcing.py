"""Budget-forced judge GRPO rollouts: a verdict line appended to samples that have none.

A pointwise reasoning judge that forces verdicts at inference (``JudgeConfig.forces_verdict``)
is trained as it judges: a sampled verdict whose own output has no valid verdict line when it
stops (cut off by the budget, or ended without one) gets ``"\\n" + "Score: "`` appended after its
reasoning (trailing whitespace and EOS dropped, as ``PointwiseJudge._forced`` prefills it), a
score drawn from the model's own distribution over the scale's candidates at that position
(seeded; the argmax at temperature 0), the rest of the written score (``/10`` on scales that need
it) and EOS. Those tokens join the sample's completion ids, so the policy gradient also trains
the format. Its reward is the verifiable reward of the forced verdict minus ``penalty``; when the
model puts no probability on any score the sample keeps -1.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from judgelab.engines.base import ChatMessage, EngineError, Generation
from judgelab.engines.chat import render_prompt
from judgelab.engines.transformers_engine import TransformersEngine
from judgelab.judging.scale import SCORE_PREFIX, Scale
from judgelab.units.judge_sft import continuation_ids, encode, eos_id

INVALID_REWARD = -1.0
#: Reward of one sampled verdict: (generated text, finish reason) -> reward.
RewardFn = Callable[[str, str], float]


@dataclass(frozen=True)
class VerdictForcing:
    """The verdict line forced after a rollout without one, and the reward it costs.

    ``candidates[i]`` is scored right after ``prefix``; ``lines[i]`` is its whole verdict line.
    """

    prefix: str
    candidates: tuple[str, ...]
    lines: tuple[str, ...]
    penalty: float

    @classmethod
    def for_scale(cls, scale: Scale, penalty: float) -> VerdictForcing:
        candidates = scale.candidates()
        lines = tuple(scale.answer(scale.value_of(c)) for c in candidates)
        return cls(SCORE_PREFIX, candidates, lines, penalty)


@dataclass(frozen=True)
class Rollout:
    """One sampled verdict as the trainer sees it: its completion ids and reward."""

    token_ids: tuple[int, ...]
    reward: float
    #: The judge's own output had a valid verdict (the strict count).
    valid: bool
    #: A verdict line was appended and rewarded (``reward`` includes the penalty).
    forced: bool
    #: What the judge said, the appended verdict line included.
    text: str


def rollout(
    sampler: TransformersEngine,
    conversation: list[ChatMessage],
    generation: Generation,
    reward: RewardFn,
    forcing: VerdictForcing | None,
    rng: random.Random,
    temperature: float,
) -> Rollout:
    """``generation`` rewarded; forced first when it has no valid verdict and ``forcing`` is set."""
    own = reward(generation.text, generation.finish_reason)
    unforced = Rollout(
        tuple(generation.token_ids), own, own != INVALID_REWARD, False, generation.text
    )
    if unforced.valid or forcing is None:
        return unforced
    forced = _forced(sampler, conversation, generation, forcing, rng, temperature)
    if forced is None:
        return unforced
    value = reward(forced.text, "stop")
    if value == INVALID_REWARD:
        return unforced
    return replace(forced, reward=value - forcing.penalty)


def _forced(
    sampler: TransformersEngine,
    conversation: list[ChatMessage],
    generation: Generation,
    forcing: VerdictForcing,
    rng: random.Random,
    temperature: float,
) -> Rollout | None:
    """``generation`` with a forced verdict line (reward unset); None: no score is possible."""
    tokenizer = sampler.tokenizer
    kept = _without_trailing_blanks(tokenizer, generation.token_ids)
    reasoning = _decode(tokenizer, kept).rstrip()
    try:
        (scores,) = sampler.score_candidates(
            [conversation], forcing.candidates, f"{reasoning}\n{forcing.prefix}"
        )
    except EngineError:
        return None
    chosen = pick(scores.probs, forcing.candidates, temperature, rng)
    if chosen is None:
        return None
    line = forcing.lines[forcing.candidates.index(chosen)]
    # The appended line's tokens as the model writes them after its own (kept) tokens.
    context = render_prompt(tokenizer, conversation) + _decode(tokenizer, kept)
    tail = continuation_ids(tokenizer, context, encode(tokenizer, context), f"\n{line}")
    ids = (*kept, *tail, eos_id(tokenizer))
    return Rollout(ids, math.nan, False, True, f"{reasoning}\n{line}")


def pick(
    probs: dict[str, float], candidates: Sequence[str], temperature: float, rng: random.Random
) -> str | None:
    """A candidate drawn from ``probs`` sharpened by ``temperature`` (argmax at 0)."""
    if not any(probs[c] > 0 for c in candidates):
        return None
    if temperature <= 0:
        return max(candidates, key=lambda c: probs[c])
    top = max(probs[c] for c in candidates)
    weights = [(probs[c] / top) ** (1.0 / temperature) if probs[c] > 0 else 0.0 for c in candidates]
    return rng.choices(list(candidates), weights=weights)[0]


def _without_trailing_blanks(tokenizer: Any, ids: Sequence[int]) -> list[int]:
    """``ids`` without the trailing tokens that write nothing visible (EOS, spaces, newlines)."""
    kept = list(ids)
    while kept and not _decode(tokenizer, kept[-1:]).strip():
        kept.pop()
    return kept


def _decode(tokenizer: Any, ids: Sequence[int]) -> str:
    text: str = tokenizer.decode(
        list(ids), skip_special_tokens=True, clean_up_tokenization_spaces=False
    )
    return text
