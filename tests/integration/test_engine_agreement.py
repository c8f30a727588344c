"""The two engines on the same weights: in-process transformers vs llama.cpp's server.

transformers de-quantizes the Q4_1 GGUF and computes in float32; llama.cpp computes with the
quantized weights. bench/engine_agreement.py measures the gap on Arena-Hard prompts (mean
|ΔE[score]| 0.06, argmax agreement 1.0 with top-200 log-probs); this test holds the same
engines to looser bounds on a few built-in prompts so a broken chat template, a wrong
candidate lookup or a lost log-prob shows up as disagreement.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from importlib import resources

import pytest

from judgelab.engines.base import CandidateScores, ChatMessage, SamplingParams
from judgelab.engines.llamacpp_server import MODEL_ALIAS, N_CTX
from judgelab.engines.openai_engine import LLAMACPP_PLAIN_SAMPLING, OpenAIEngine
from judgelab.engines.transformers_engine import TransformersEngine

pytestmark = [pytest.mark.slow, pytest.mark.llamacpp]

DIGITS = tuple(str(d) for d in range(10))
INSTRUCTIONS = "Rate the answer below from 0 to 9. Reply with one digit only, no words."


def _judge_conversations(count: int) -> list[list[ChatMessage]]:
    text = resources.files("judgelab").joinpath("data/quickstart.jsonl").read_text("utf-8")
    rows = [json.loads(line) for line in text.splitlines()[:count]]
    return [
        [ChatMessage("user", f"{INSTRUCTIONS}\n\n[Question]\n{row['prompt']}\n\n[Answer]\n"
                             f"{row['reference']}\n\nYour one-digit rating:")]
        for row in rows
    ]


def _expected(scores: CandidateScores) -> float:
    return sum(int(c) * p for c, p in scores.probs.items())


@pytest.fixture(scope="module")
def server_engine(llamacpp_base_url: str) -> Iterator[OpenAIEngine]:
    engine = OpenAIEngine(MODEL_ALIAS, llamacpp_base_url, context_length=N_CTX,
                          extra_body=LLAMACPP_PLAIN_SAMPLING, max_concurrency=2,
                          score_top_logprobs=1000, timeout_s=120, max_retries=1)
    yield engine
    engine.close()


def test_expected_scores_agree(builtin_engine: TransformersEngine,
                               server_engine: OpenAIEngine) -> None:
    conversations = _judge_conversations(6)
    ours = builtin_engine.score_candidates(conversations, DIGITS)
    theirs = server_engine.score_candidates(conversations, DIGITS)
    for local, served in zip(ours, theirs, strict=True):
        assert all(math.isfinite(served.logprobs[d]) for d in DIGITS), served.logprobs
        assert abs(_expected(local) - _expected(served)) < 0.3
        assert max(local.probs, key=local.probs.__getitem__) == max(
            served.probs, key=served.probs.__getitem__)
        raw_gap = max(abs(local.logprobs[d] - served.logprobs[d]) for d in DIGITS)
        assert raw_gap < 0.5, (local.logprobs, served.logprobs)


def test_first_token_distributions_agree(builtin_engine: TransformersEngine,
                                         server_engine: OpenAIEngine) -> None:
    """Greedy texts may part at a near-tie (measured: "The" -1.8827 vs "L" -1.8837 for the
    capital of France); the distributions they sample from must still agree."""
    prompts = [[ChatMessage("user", "What is the capital of France?")],
               [ChatMessage("user", "Name three primary colors.")]]
    params = SamplingParams(max_new_tokens=4, temperature=0.0, seed=0, top_logprobs=5)
    ours = builtin_engine.generate(prompts, params)
    theirs = server_engine.generate(prompts, params)
    for local, served in zip(ours, theirs, strict=True):
        shared = set(local.top_logprobs[0]) & set(served.top_logprobs[0])
        assert len(shared) >= 3, (local.top_logprobs[0], served.top_logprobs[0])
        for token in shared:
            # measured gaps up to 0.11 nats; 0.25 leaves room, a real bug shows as >> 1
            assert abs(local.top_logprobs[0][token] - served.top_logprobs[0][token]) < 0.25
