"""OpenAIEngine against a real server: llama-cpp-python serving the built-in SmolLM2 GGUF."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest

from judgelab.engines.base import ChatMessage, EngineError, SamplingParams
from judgelab.engines.llamacpp_server import MODEL_ALIAS, N_CTX
from judgelab.engines.openai_engine import LLAMACPP_PLAIN_SAMPLING, OpenAIEngine
from judgelab.spec.model import ModelSpec

pytestmark = [pytest.mark.slow, pytest.mark.llamacpp]

GREETING = [ChatMessage("user", "Write one short sentence about the sea.")]
RATING = [
    ChatMessage("system", "You rate answers. Reply with one digit from 0 to 9 and nothing else."),
    ChatMessage("user", "Question: What is 2 + 2?\nAnswer: 4\n\nRating (0-9):"),
]
DIGITS = tuple(str(d) for d in range(10))


@pytest.fixture(scope="module")
def engine(llamacpp_base_url: str) -> Iterator[OpenAIEngine]:
    engine = OpenAIEngine(
        MODEL_ALIAS, llamacpp_base_url, context_length=N_CTX, max_concurrency=2,
        timeout_s=120, max_retries=1,
        # Without it the server adds a repeat penalty, top-k and min-p to every request.
        extra_body=LLAMACPP_PLAIN_SAMPLING,
    )
    yield engine
    engine.close()


def test_engine_from_spec_talks_to_the_server(llamacpp_base_url: str):
    spec = ModelSpec(engine="openai", name=MODEL_ALIAS, base_url=llamacpp_base_url,
                     context_length=N_CTX, timeout_s=120)
    engine = OpenAIEngine.from_spec(spec)
    try:
        [g] = engine.generate([GREETING], SamplingParams(max_new_tokens=4, temperature=0.0))
    finally:
        engine.close()
    assert g.text.strip() and len(g.logprobs) >= 1


def test_chat_completion_returns_text_with_negative_logprobs(engine: OpenAIEngine):
    [g] = engine.generate([GREETING], SamplingParams(max_new_tokens=12, temperature=0.0))

    assert g.text.strip()
    assert g.finish_reason in ("stop", "length")
    assert g.prompt_tokens > 0
    assert 1 <= len(g.logprobs) <= 12
    assert all(lp <= 0.0 and math.isfinite(lp) for lp in g.logprobs)
    assert any(lp < 0.0 for lp in g.logprobs)
    assert g.token_ids == []  # chat APIs give token strings, not ids


def test_top_logprobs_rank_the_greedy_token_first(engine: OpenAIEngine):
    [g] = engine.generate(
        [GREETING], SamplingParams(max_new_tokens=8, temperature=0.0, top_logprobs=5)
    )

    assert len(g.top_logprobs) == len(g.logprobs)
    for sampled, alternatives in zip(g.logprobs, g.top_logprobs, strict=True):
        assert len(alternatives) >= 5
        assert all(lp <= 0.0 for lp in alternatives.values())
        # Greedy decoding samples the most likely token.
        assert sampled == pytest.approx(max(alternatives.values()), abs=1e-4)
        assert sum(math.exp(lp) for lp in alternatives.values()) <= 1.0 + 1e-4


def test_digit_scores_form_a_distribution(engine: OpenAIEngine):
    [scores] = engine.score_candidates([RATING], DIGITS)

    assert set(scores.logprobs) == set(DIGITS)
    assert sum(scores.probs.values()) == pytest.approx(1.0)
    assert 0.0 < scores.mass <= 1.0 + 1e-4
    assert sum(1 for lp in scores.logprobs.values() if lp > -math.inf) >= 2


def test_multi_token_candidates_are_refused(engine: OpenAIEngine):
    with pytest.raises(EngineError, match="supercalifragilistic"):
        engine.score_candidates([RATING], ("5", "supercalifragilistic"))


def test_seeded_generation_is_reproducible(engine: OpenAIEngine):
    greedy = SamplingParams(max_new_tokens=16, temperature=0.0)
    sampled = SamplingParams(max_new_tokens=16, temperature=1.0, seed=1234)
    # llama.cpp's logits differ in the last decimals between a prefill of the whole prompt
    # and a replay of only its last token (the rest already in the KV cache), which can flip
    # a near-tie. After any run that generated 2+ tokens, a repeated prompt always takes the
    # replay path, so from then on runs repeat exactly.
    engine.generate([GREETING], SamplingParams(max_new_tokens=4))

    first, second = (engine.generate([GREETING], greedy)[0] for _ in range(2))
    assert (first.text, first.logprobs) == (second.text, second.logprobs)
    one, two = (engine.generate([GREETING], sampled)[0] for _ in range(2))
    assert one.text == two.text
    assert one.logprobs == pytest.approx(two.logprobs)


def test_prompt_tokens_are_counted_with_the_chat_template(engine: OpenAIEngine):
    short = engine.count_tokens(GREETING)
    longer = engine.count_tokens(GREETING + [ChatMessage("user", "And one about mountains.")])

    assert 0 < short < longer
    [g] = engine.generate([GREETING], SamplingParams(max_new_tokens=1, temperature=0.0))
    assert short == g.prompt_tokens
    assert engine.context_length == N_CTX


def test_server_without_context_metadata_needs_it_in_the_spec(llamacpp_base_url: str):
    engine = OpenAIEngine(MODEL_ALIAS, llamacpp_base_url)
    try:
        with pytest.raises(EngineError, match="set context_length"):
            _ = engine.context_length
    finally:
        engine.close()
