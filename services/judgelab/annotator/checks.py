"""Request checks that need the gold judge: a reference where its template needs one, and a
judge prompt that fits the model's context with room for the judge's answer."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from judgelab.engines.base import EngineError
from judgelab.judging import PointwiseJudge, Sample
from judgelab.judging.samples import prompt_text
from judgelab.serving.errors import InvalidArgument, Problem

log = logging.getLogger(__name__)


def check_references(judge: PointwiseJudge, samples: Sequence[Sample]) -> None:
    """INVALID_ARGUMENT naming ``samples[i].reference`` for each one a reference-guided judge
    would need but did not get."""
    if not judge.config.reference_guided:
        return
    problems = [
        Problem(
            f"samples[{i}].reference",
            "REQUIRED",
            f"the gold template {judge.prompt.template.id!r} judges against a reference answer",
        )
        for i, sample in enumerate(samples)
        if sample.reference is None or not sample.reference.strip()
    ]
    if problems:
        raise InvalidArgument(*problems)


def check_context(judge: PointwiseJudge, samples: Sequence[tuple[int, Sample]]) -> None:
    """INVALID_ARGUMENT naming the longer of prompt/response for each ``(index, sample)`` whose
    rendered judge prompt leaves the judge too little room to answer."""
    problems = []
    for index, sample in samples:
        problem = _too_long(judge, index, sample)
        if problem is not None:
            problems.append(problem)
    if problems:
        raise InvalidArgument(*problems)


def judge_room(judge: PointwiseJudge) -> int:
    """Most prompt tokens the judge can take: its context less what it may generate."""
    return judge.engine.context_length - (judge.config.generation_limit or 1)


def _too_long(judge: PointwiseJudge, index: int, sample: Sample) -> Problem | None:
    try:
        tokens = judge.engine.count_tokens(judge.conversation(sample))
        room = judge_room(judge)
    except EngineError as error:
        # The model call will fail the same way and say so in the judgement.
        log.warning("could not count the tokens of sample %d: %s", index, error)
        return None
    if tokens <= room:
        return None
    field = "response" if len(sample.response) >= len(prompt_text(sample.prompt)) else "prompt"
    return Problem(
        f"samples[{index}].{field}",
        "TOO_LONG",
        f"the gold judge's prompt for this sample is {tokens} tokens; its context of "
        f"{judge.engine.context_length} tokens leaves {room} after the "
        f"{judge.config.generation_limit or 1} it may generate",
    )
