"""Batched engine calls that turn an :class:`EngineError` into a per-item value.

A failed batch is retried item by item, so one bad item (a prompt too long for the judge's
context, say) does not void the rest of the batch. The price is one call per item when the
engine is down for everyone; the items still come back as values, never as an exception.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from judgelab.engines.base import (
    CandidateScores,
    Conversation,
    Engine,
    EngineError,
    Generation,
    SamplingParams,
)
from judgelab.judging.config import TOP_LOGPROBS, JudgeConfig

T = TypeVar("T")
R = TypeVar("R")


def isolate_errors(
    call: Callable[[Sequence[T]], Sequence[R]], items: Sequence[T]
) -> list[R | EngineError]:
    """``call(items)``; if that raises EngineError, ``call([item])`` for each item instead."""
    try:
        return _checked(call(items), len(items))
    except EngineError as error:
        if len(items) <= 1:
            return [error for _ in items]
    results: list[R | EngineError] = []
    for item in items:
        try:
            results.extend(_checked(call([item]), 1))
        except EngineError as error:
            results.append(error)
    return results


def score_with_tokens(
    engine: Engine,
    conversations: Sequence[Conversation],
    candidates: Sequence[str],
    assistant_prefix: str,
    count_prompt_tokens: bool,
) -> tuple[list[tuple[CandidateScores, int] | EngineError], float]:
    """Candidate scores and prompt token counts per conversation; the wall time it took."""

    def call(batch: Sequence[Conversation]) -> list[tuple[CandidateScores, int]]:
        scores = engine.score_candidates(batch, candidates, assistant_prefix)
        counts = [engine.count_tokens(c) if count_prompt_tokens else 0 for c in batch]
        return list(zip(scores, counts, strict=True))

    started = time.perf_counter()
    results = isolate_errors(call, conversations)
    return results, time.perf_counter() - started


def generate_verdicts(
    engine: Engine, config: JudgeConfig, conversations: Sequence[Conversation], top_logprobs: bool
) -> tuple[list[Generation | EngineError], float]:
    """A reasoning judge's generations (greedy unless the config says otherwise)."""

    def call(batch: Sequence[Conversation]) -> list[Generation]:
        params = SamplingParams(
            max_new_tokens=_generation_limit(engine, config, batch),
            temperature=config.temperature,
            seed=config.seed,
            top_logprobs=TOP_LOGPROBS if top_logprobs else 0,
            reasoning_effort=config.reasoning_effort,
        )
        return engine.generate(batch, params)

    started = time.perf_counter()
    results = isolate_errors(call, conversations)
    return results, time.perf_counter() - started


def _generation_limit(engine: Engine, config: JudgeConfig, batch: Sequence[Conversation]) -> int:
    limit = config.generation_limit
    if limit is not None:
        return limit
    longest = max(engine.count_tokens(c) for c in batch)
    room = engine.context_length - longest
    if room < 1:
        raise EngineError(
            f"a {longest}-token judge prompt leaves no room in the context of {engine.name}"
        )
    return room


def _checked(results: Sequence[R], expected: int) -> list[R]:
    if len(results) != expected:
        raise EngineError(f"engine returned {len(results)} results for {expected} inputs")
    return list(results)
