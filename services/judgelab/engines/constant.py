"""An engine that answers at once with a fixed verdict: no model, no compute.

For measuring what the serving layer costs by itself (gRPC, batching, conversion) and for
servicer tests that must not depend on a model's opinion. Tokens are whitespace-split words.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence

from judgelab.engines.base import (
    CandidateScores,
    Conversation,
    Engine,
    EngineError,
    Generation,
    SamplingParams,
)


class ConstantEngine(Engine):
    """Scores put ``probability`` on ``answer`` and share the rest; generations say ``text``."""

    def __init__(
        self,
        answer: str = "7",
        probability: float = 0.9,
        text: str = "The response is adequate.\nScore: 7",
        context_length: int = 8192,
    ) -> None:
        if not 0 < probability <= 1:
            raise ValueError(f"probability must be in (0, 1], got {probability}")
        self.name = "constant"
        self.answer = answer
        self.probability = probability
        self.text = text
        self._context_length = context_length
        self._lock = threading.Lock()
        self.calls = 0  # batches served, for tests that count model calls

    @property
    def context_length(self) -> int:
        return self._context_length

    def count_tokens(self, conversation: Conversation) -> int:
        return sum(len(message.content.split()) + 4 for message in conversation)

    def generate(
        self, conversations: Sequence[Conversation], params: SamplingParams
    ) -> list[Generation]:
        self._served()
        words = self.text.split()[: params.max_new_tokens]
        text = self.text if len(words) == len(self.text.split()) else " ".join(words)
        finish = "stop" if text == self.text else "length"
        return [
            Generation(text, [], [0.0] * len(words), finish, self._fits(c, len(words)))
            for c in conversations
        ]

    def score_candidates(
        self,
        conversations: Sequence[Conversation],
        candidates: Sequence[str],
        assistant_prefix: str = "",
    ) -> list[CandidateScores]:
        self._served()
        for conversation in conversations:
            self._fits(conversation, 1)
        others = len(candidates) - (self.answer in candidates)
        rest = (1 - self.probability) / others if others else 0.0
        logprobs = {c: _log(self.probability if c == self.answer else rest) for c in candidates}
        return [CandidateScores(tuple(candidates), dict(logprobs)) for _ in conversations]

    def _served(self) -> None:
        with self._lock:
            self.calls += 1

    def _fits(self, conversation: Conversation, completion: int) -> int:
        tokens = self.count_tokens(conversation)
        if tokens + completion > self._context_length:
            raise EngineError(
                f"{tokens + completion} tokens exceed the context length {self._context_length}"
            )
        return tokens


def _log(probability: float) -> float:
    return math.log(probability) if probability > 0 else -math.inf
