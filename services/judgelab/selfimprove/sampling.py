"""K candidate answers per prompt from the policy, in batched engine calls."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from judgelab.engines.base import Engine, SamplingParams
from judgelab.selfimprove.prompts import PromptRow

#: Prompts per engine call (each contributes K rows; the engine batches rows itself).
PROMPTS_PER_CALL = 8


@dataclass(frozen=True)
class Candidates:
    """The K sampled answers to one prompt."""

    row: PromptRow
    texts: tuple[str, ...]
    finish_reasons: tuple[str, ...]


def sample_candidates(
    engine: Engine,
    rows: Sequence[PromptRow],
    k: int,
    params: SamplingParams,
    prompts_per_call: int = PROMPTS_PER_CALL,
) -> list[Candidates]:
    """``k`` samples of every prompt with ``params`` (temperature, top-p, seed, length).

    The k copies of a prompt are rows of one batch: each row draws its own tokens, so one seed
    still gives k different answers, and the same seed gives the same answers again."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    result: list[Candidates] = []
    for start in range(0, len(rows), prompts_per_call):
        chunk = rows[start : start + prompts_per_call]
        conversations = [row.conversation() for row in chunk for _ in range(k)]
        seed = None if params.seed is None else params.seed + start
        generations = engine.generate(conversations, dataclasses.replace(params, seed=seed))
        for i, row in enumerate(chunk):
            mine = generations[i * k : (i + 1) * k]
            result.append(
                Candidates(
                    row,
                    tuple(g.text for g in mine),
                    tuple(g.finish_reason for g in mine),
                )
            )
    return result
