"""The distribution a reasoning judge put on its verdict, from the generation's top log-probs.

The verdict token is found by rebuilding each generated token's text from its top
alternatives (the one whose log-prob equals the sampled token's), joining them, and taking the
last place the final line (up to its verdict) occurs. Only text near the end has to be
rebuilt right: a garbled multi-byte character earlier in the reasoning does not matter.
The verdict must sit in one token ("7", " 7", "A"), so this works for 0-9 scales and A/B
verdicts; anything else (a "10" split over two tokens, a missing alternative) gives None
and the caller falls back to the parsed verdict alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import accumulate

from judgelab.engines.base import Generation

_SAME_LOGPROB = 1e-4


def verdict_probabilities(
    generation: Generation, line_through_verdict: str, verdict: str, options: Sequence[str]
) -> dict[str, float] | None:
    """Raw probability of each option at the verdict's token position, or None if unknown.

    ``line_through_verdict`` is the final line up to the end of ``verdict``. Alternatives are
    matched up to surrounding whitespace, as candidate scoring does (" 7" counts for "7").
    """
    top = generation.top_logprobs
    if not top or len(top) != len(generation.logprobs):
        return None
    texts = [_sampled_text(alts, lp) for alts, lp in zip(top, generation.logprobs, strict=True)]
    ends = list(accumulate(len(t) for t in texts))
    joined = "".join(texts)
    found = joined.rfind(line_through_verdict)
    if found < 0:
        return None
    verdict_end = found + len(line_through_verdict)
    verdict_start = verdict_end - len(verdict)
    if verdict_end not in ends:
        return None  # the verdict's token runs on past the verdict
    index = ends.index(verdict_end)
    token_start = verdict_end - len(texts[index])
    if token_start > verdict_start:
        return None  # the verdict spans several tokens
    lead = joined[token_start:verdict_start]
    return {
        option: sum(
            math.exp(lp)
            for text, lp in top[index].items()
            if text.strip() == (lead + option).strip()
        )
        for option in options
    }


def _sampled_text(alternatives: dict[str, float], logprob: float) -> str:
    """The text of the sampled token: the alternative with the sampled token's log-prob."""
    best = min(alternatives.items(), key=lambda kv: abs(kv[1] - logprob), default=None)
    if best is None or abs(best[1] - logprob) > _SAME_LOGPROB:
        return ""
    return best[0]
