"""The one interface every generation/scoring backend implements.

Two operations cover everything judgelab asks of a model:

* ``generate``: batched sampling from chat conversations, seeded, returning the
  token ids and the per-token log-probs of what was sampled (the policy's
  "old" log-probs for GRPO, the judge's reasoning text, ...).
* ``score_candidates``: one forward pass that reads the probability the model
  puts on each of a fixed set of candidate continuations at the position right
  after the prompt (e.g. the score digits "0".."9" of a pointwise judge).

Backends are sync-first (the learner and tests call them directly); the async
twins exist so services can overlap many requests. The base class bridges
each side to the other, so a backend implements whichever is natural for it.
"""

from __future__ import annotations

import asyncio
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class ChatMessage:
    role: Role
    content: str


Conversation = Sequence[ChatMessage]


@dataclass(frozen=True)
class SamplingParams:
    """How to sample. ``temperature == 0`` means greedy decoding."""

    max_new_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    # Number of alternatives per position to report (0 = only the sampled token's log-prob).
    top_logprobs: int = 0
    # For reasoning-capable servers (gpt-oss, o-series): "low" | "medium" | "high".
    reasoning_effort: str | None = None
    # Text appended after the chat template's assistant header, before sampling starts.
    assistant_prefix: str = ""

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_logprobs < 0:
            raise ValueError(f"top_logprobs must be >= 0, got {self.top_logprobs}")


@dataclass
class Generation:
    """One sampled completion.

    ``logprobs[i]`` is the log-probability, under the model's *unscaled*
    distribution (temperature 1, no top-p), of ``token_ids[i]``. Backends that
    cannot return token ids (some servers) leave ``token_ids`` empty but must
    still fill ``logprobs`` when it was asked for.
    """

    text: str
    token_ids: list[int]
    logprobs: list[float]
    finish_reason: str  # "stop" | "length"
    prompt_tokens: int
    top_logprobs: list[dict[str, float]] = field(default_factory=list)
    reasoning: str | None = None  # a server's separate reasoning channel, if any

    @property
    def completion_tokens(self) -> int:
        return len(self.logprobs) if self.logprobs else len(self.token_ids)


@dataclass
class CandidateScores:
    """Distribution over a fixed candidate set at one position.

    ``logprobs[c]`` is the model's raw log-probability of candidate ``c`` as the
    continuation (sum over its tokens when it spans several);
    ``mass`` is the total raw probability the candidates hold, a check on
    whether the model was even answering in the expected format.
    """

    candidates: tuple[str, ...]
    logprobs: dict[str, float]

    @property
    def mass(self) -> float:
        return sum(math.exp(lp) for lp in self.logprobs.values())

    @property
    def probs(self) -> dict[str, float]:
        """Renormalised over the candidate set (sums to 1 unless every candidate is impossible)."""
        top = max(self.logprobs.values())
        if top == -math.inf:
            return {c: 0.0 for c in self.candidates}
        weights = {c: math.exp(self.logprobs[c] - top) for c in self.candidates}
        total = sum(weights.values())
        return {c: w / total for c, w in weights.items()}


class EngineError(RuntimeError):
    """A backend failed in a way the caller should see (bad model path, server down, ...)."""


class Engine(ABC):
    """Generation and candidate scoring over chat conversations."""

    name: str

    # -- generation -----------------------------------------------------------------
    def generate(
        self, conversations: Sequence[Conversation], params: SamplingParams
    ) -> list[Generation]:
        return _run_sync(self.agenerate(conversations, params))

    async def agenerate(
        self, conversations: Sequence[Conversation], params: SamplingParams
    ) -> list[Generation]:
        return await asyncio.to_thread(self.generate, conversations, params)

    # -- scoring --------------------------------------------------------------------
    def score_candidates(
        self,
        conversations: Sequence[Conversation],
        candidates: Sequence[str],
        assistant_prefix: str = "",
    ) -> list[CandidateScores]:
        return _run_sync(self.ascore_candidates(conversations, candidates, assistant_prefix))

    async def ascore_candidates(
        self,
        conversations: Sequence[Conversation],
        candidates: Sequence[str],
        assistant_prefix: str = "",
    ) -> list[CandidateScores]:
        return await asyncio.to_thread(
            self.score_candidates, conversations, candidates, assistant_prefix
        )

    # -- tokens ---------------------------------------------------------------------
    @abstractmethod
    def count_tokens(self, conversation: Conversation) -> int:
        """Prompt tokens this conversation costs, chat template included."""

    @property
    @abstractmethod
    def context_length(self) -> int:
        """Most tokens (prompt + completion) the model accepts."""

    def close(self) -> None:  # noqa: B027 - optional hook, most backends hold nothing
        """Release sockets, threads or memory held by the backend."""


def _run_sync(coro):  # type: ignore[no-untyped-def]
    """Run a coroutine from sync code, also when called inside a running loop's thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    raise EngineError(
        "sync engine call made from inside a running event loop; use the a-prefixed method"
    )
