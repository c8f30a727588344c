"""Pure functions that build and read the JSON of OpenAI-compatible chat servers; no I/O.

Request messages; the first choice of a response and its per-token log-probs (vLLM's
``-9999`` stand-in read as ``-inf``, repeated top-k tokens merged by log-sum-exp);
candidate validation and scoring from the top-k alternatives; the context length as
``/v1/models`` or ``/props`` report it; a deliberately high prompt-token estimate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from judgelab.engines.base import CandidateScores, Conversation, EngineError

JSON = dict[str, Any]

# vLLM writes -inf log-probs as -9999.0 (JSON has no infinity).
_NEG_INF_STAND_IN = -9999.0


def reject_assistant_prefix(assistant_prefix: str) -> None:
    if assistant_prefix:
        raise EngineError(
            "assistant_prefix is not supported by the openai engine: chat APIs cannot portably "
            "prefill the assistant turn; put the instruction in the prompt instead"
        )


def messages(conversation: Conversation) -> list[JSON]:
    return [{"role": message.role, "content": message.content} for message in conversation]


def first_choice(body: JSON) -> JSON:
    choices = body.get("choices")
    if not choices or not isinstance(choices[0], dict):
        raise EngineError(f"server response has no choices: {str(body)[:200]}")
    return choices[0]


def logprob_entries(choice: JSON) -> list[JSON] | None:
    logprobs = choice.get("logprobs")
    content = logprobs.get("content") if isinstance(logprobs, dict) else None
    if not isinstance(content, list):
        return None
    return [entry for entry in content if isinstance(entry, dict)]


def logprob(value: Any) -> float:
    if value is None or float(value) <= _NEG_INF_STAND_IN:
        return -math.inf
    return float(value)


def top_logprob_dict(entry: JSON) -> dict[str, float]:
    merged: dict[str, float] = {}
    for alt in entry.get("top_logprobs") or []:
        token, value = str(alt.get("token", "")), logprob(alt.get("logprob"))
        merged[token] = _logaddexp(merged[token], value) if token in merged else value
    return merged


def _logaddexp(a: float, b: float) -> float:
    if a == -math.inf:
        return b
    if b == -math.inf:
        return a
    top = max(a, b)
    return top + math.log(math.exp(a - top) + math.exp(b - top))


def validate_candidates(candidates: Sequence[str]) -> tuple[str, ...]:
    if not candidates:
        raise ValueError("candidates must not be empty")
    normalised: dict[str, str] = {}
    for candidate in candidates:
        key = candidate.strip()
        if not key:
            raise ValueError(f"candidate {candidate!r} is blank")
        if key in normalised:
            raise ValueError(
                f"candidates {normalised[key]!r} and {candidate!r} are the same token "
                "up to surrounding whitespace"
            )
        normalised[key] = candidate
    return tuple(candidates)


def candidate_scores(
    candidates: tuple[str, ...], alternatives: list[tuple[str, float]]
) -> CandidateScores:
    """Log-prob of each candidate: the log-sum-exp of the top-k tokens equal to it up to
    surrounding whitespace ("5", " 5"); -inf when none is in the top-k."""
    by_key = {candidate.strip(): candidate for candidate in candidates}
    logprobs = dict.fromkeys(candidates, -math.inf)
    for token, value in dict.fromkeys(alternatives):  # drop exact repeats, keep order
        candidate = by_key.get(token.strip())
        if candidate is not None:
            logprobs[candidate] = _logaddexp(logprobs[candidate], value)
    return CandidateScores(candidates=candidates, logprobs=logprobs)


def context_length_from_models(models: JSON, name: str) -> int | None:
    entries = [e for e in models.get("data") or [] if isinstance(e, dict)]
    named = [e for e in entries if e.get("id") == name] or (entries if len(entries) == 1 else [])
    for entry in named:
        meta = entry.get("meta")
        meta = meta if isinstance(meta, dict) else {}
        for value in (entry.get("max_model_len"), entry.get("context_length"), meta.get("n_ctx")):
            if isinstance(value, int) and value > 0:
                return value
    return None


def context_length_from_props(props: JSON) -> int | None:
    settings = props.get("default_generation_settings")
    nested = settings.get("n_ctx") if isinstance(settings, dict) else None
    for value in (props.get("n_ctx"), nested):
        if isinstance(value, int) and value > 0:
            return value
    return None


def estimate_prompt_tokens(messages: list[JSON]) -> int:
    """Over-estimate on purpose (3 bytes a token, 8 tokens of template per message)."""
    return 8 + sum(8 + math.ceil(len(str(m["content"]).encode()) / 3) for m in messages)
