"""Speed paths of the transformers engine: shared prefixes, length/decoding batches, chunked
passes and the in-place cache. Each must give the numbers of the plain path (tiny model)."""

from __future__ import annotations

import itertools
import random

import pytest
import torch
from transformers import MistralConfig
from transformers.cache_utils import DynamicCache, DynamicLayer

from judgelab.engines import ChatMessage, SamplingParams, split_attention
from judgelab.engines import prefix_sharing as ps
from judgelab.engines import transformers_engine as te
from judgelab.engines.chat import render_prompt
from judgelab.engines.prefix_sharing import (
    GrowingLayer,
    decode_batches,
    length_batches,
    new_cache,
    prefix_groups,
)
from judgelab.engines.transformers_engine import TransformersEngine

DIGITS = [str(d) for d in range(10)]
QUESTION = "Explain why the river floods every spring and what the town should do about it. " * 3
RESPONSES = [
    "It rains.",
    "Snow melts in the mountains and the river rises; build levees.",
    "no idea",
    "The town should move.",
    "Spring floods come from melt water. " * 4,
    "7",
    "Dams upstream would help, and so would better drainage in the low streets.",
    "the the the the",
]


def judged(question: str, response: str) -> list[ChatMessage]:
    return [
        ChatMessage("system", "You are a strict judge. Rate the response from 0 to 9."),
        ChatMessage("user", f"[Question]\n{question}\n[Response]\n{response}\n[End]\nScore it."),
    ]


GROUP = [judged(QUESTION, r) for r in RESPONSES]
OTHERS = [[ChatMessage("user", "hi")], judged("What is 2+2?", "4")]


def engine_like(tiny: TransformersEngine, **kwargs: object) -> TransformersEngine:
    return TransformersEngine(tiny.model, tiny.tokenizer, **kwargs)


def reference_logprobs(engine: TransformersEngine, conversation, prefix: str) -> torch.Tensor:
    """Next-token log-probs of one unpadded, uncached forward pass."""
    text = render_prompt(engine.tokenizer, conversation, prefix)
    ids = engine.tokenizer(text, add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        logits = engine.model(input_ids=torch.tensor([ids])).logits[0, -1]
    return torch.log_softmax(logits.float(), dim=-1)


# -- planning -------------------------------------------------------------------------


def test_rows_sharing_a_long_prefix_are_grouped_and_keep_a_token_of_their_own() -> None:
    header, first, second = list(range(100, 140)), list(range(200, 300)), list(range(300, 400))
    rows = [header + first + [i, i + 1, i + 2] for i in (1, 5, 9)]
    rows += [header + second + [7] * 2, header + second + [7] * 3, [1, 2, 3]]
    groups = {tuple(sorted(g.rows)): g.prefix_len for g in prefix_groups(rows)}
    # Not one group over the 40-token header: two groups over header + question save more.
    assert groups == {(0, 1, 2): 140, (3, 4): 141, (5,): 0}


def test_short_or_unprofitable_prefixes_are_not_shared() -> None:
    short = [list(range(20)) + [50 + i] * 30 for i in range(4)]
    assert all(g.prefix_len == 0 for g in prefix_groups(short))
    # 40 shared tokens do not pay for 1000-token suffixes run after a cache.
    long_tails = [list(range(40)) + [500 + i] * 1000 for i in range(4)]
    assert all(g.prefix_len == 0 for g in prefix_groups(long_tails))
    identical = [list(range(60))] * 3
    assert prefix_groups(identical) == [ps.PrefixGroup((0, 1, 2), 59)]


def test_groups_partition_the_rows() -> None:
    rng = random.Random(0)
    stems = [[rng.randrange(50) for _ in range(rng.randrange(30, 80))] for _ in range(5)]
    rows = [
        rng.choice(stems) + [rng.randrange(50) for _ in range(rng.randrange(1, 40))]
        for _ in range(60)
    ]
    groups = prefix_groups(rows)
    assert sorted(r for g in groups for r in g.rows) == list(range(60))
    for group in groups:
        for row in group.rows:
            assert rows[row][: group.prefix_len] == rows[group.rows[0]][: group.prefix_len]
            assert len(rows[row]) > group.prefix_len


def test_length_batches_respect_rows_and_budget() -> None:
    lengths = [5, 300, 40, 41, 39, 2000, 42, 7, 6]
    batches = length_batches(lengths, max_rows=3, token_budget=130)
    assert sorted(r for b in batches for r in b) == list(range(len(lengths)))
    for batch in batches:
        widths = [lengths[r] for r in batch]
        assert len(batch) <= 3
        assert len(batch) == 1 or len(batch) * max(widths) <= 130
    assert [5] in batches  # the 2000-token row runs alone


def test_length_batches_run_rows_from_solo_from_alone() -> None:
    lengths = [5, 300, 40, 41, 39, 2000, 42, 7, 6]
    batches = length_batches(lengths, max_rows=3, token_budget=10_000, solo_from=41)
    assert sorted(r for b in batches for r in b) == list(range(len(lengths)))
    for row in (1, 3, 5, 6):
        assert [row] in batches
    assert max(len(b) for b in batches) == 3  # the short rows still share batches


def test_a_cheaper_suffix_groups_rows_behind_a_shorter_prefix() -> None:
    shared = list(range(100, 140))  # a 40-token shared prefix, 400-token own parts
    rows = [shared + [1000 + 500 * i + t for t in range(400)] for i in range(4)]
    assert all(g.prefix_len == 0 for g in prefix_groups(rows))  # 120 saved < 0.15 * 1600
    grouped = prefix_groups(rows, suffix_overhead=ps.SPLIT_SUFFIX_OVERHEAD)
    assert [(g.rows, g.prefix_len) for g in grouped] == [((0, 1, 2, 3), 40)]


def _decode_cost(lengths, batches, step_tokens):
    return sum(step_tokens + len(b) * max(lengths[r] for r in b) for b in batches)


def test_decode_batches_are_the_cheapest_split() -> None:
    rng = random.Random(1)
    for _ in range(20):
        lengths = [rng.randrange(1, 100) for _ in range(7)]
        batches = decode_batches(lengths, max_rows=4, max_tokens=250, step_tokens=60)
        assert sorted(r for b in batches for r in b) == list(range(7))
        order = sorted(range(7), key=lambda i: lengths[i])
        best = min(
            _decode_cost(lengths, split, 60)
            for cuts in itertools.product([0, 1], repeat=6)
            for split in [_split(order, cuts)]
            if all(
                len(b) <= 4 and (len(b) == 1 or len(b) * max(lengths[r] for r in b) <= 250)
                for b in split
            )
        )
        assert _decode_cost(lengths, batches, 60) == best


def test_ragged_decode_batches_count_real_lengths_and_keep_the_memory_cap() -> None:
    lengths = [10, 10, 10, 100]
    # Padded: the long row alone (fixed cost 50 < 3 x 90 padding); ragged: one batch.
    assert decode_batches(lengths, max_rows=4, max_tokens=1000, step_tokens=50) == [
        [0, 1, 2],
        [3],
    ]
    assert decode_batches(lengths, 4, 1000, 50, ragged=True) == [[0, 1, 2, 3]]
    # A grouped cache holds the real lengths: 130 positions fit 130, not 129.
    assert decode_batches(lengths, 4, 130, 50, ragged=True) == [[0, 1, 2, 3]]
    assert decode_batches(lengths, 4, 129, 50, ragged=True) == [[0, 1, 2], [3]]


def _split(order: list[int], cuts: tuple[int, ...]) -> list[list[int]]:
    out, current = [], [order[0]]
    for row, cut in zip(order[1:], cuts, strict=True):
        if cut:
            out.append(current)
            current = []
        current.append(row)
    return [*out, current]


# -- the in-place cache -----------------------------------------------------------------


def test_growing_layer_matches_concatenation_and_refuses_overflow() -> None:
    growing, plain = GrowingLayer(capacity=7), DynamicLayer()
    for size in (4, 1, 2):
        keys, values = torch.randn(2, 3, size, 5), torch.randn(2, 3, size, 5)
        got, expected = growing.update(keys, values), plain.update(keys, values)
        assert all(torch.equal(g, e) for g, e in zip(got, expected, strict=True))
    assert growing.get_seq_length() == 7
    with pytest.raises(ValueError, match="holds 7"):
        growing.update(torch.randn(2, 3, 1, 5), torch.randn(2, 3, 1, 5))


def test_sliding_window_models_keep_the_library_cache() -> None:
    config = MistralConfig(num_hidden_layers=2, sliding_window=16)
    assert isinstance(new_cache(config, 64), DynamicCache)


# -- the engine -------------------------------------------------------------------------


def test_shared_prefix_scores_match_no_sharing(tiny_engine, monkeypatch) -> None:
    calls = []
    original = te.prefix_cache
    monkeypatch.setattr(te, "prefix_cache", lambda *a: calls.append(a) or original(*a))
    conversations = [*GROUP, *OTHERS]
    candidates = [*DIGITS, "10"]
    # Three rows per batch: the group's suffixes run in several batches from one prefix.
    shared = engine_like(tiny_engine, max_batch_size=3)
    plain = engine_like(tiny_engine, max_batch_size=3, share_prefixes=False)
    got = shared.score_candidates(conversations, candidates, "Score: ")
    expected = plain.score_candidates(conversations, candidates, "Score: ")
    assert len(calls) == 1, "the group's prefix must run exactly once"
    for g, e in zip(got, expected, strict=True):
        assert g.logprobs == pytest.approx(e.logprobs, abs=1e-4)
    for conversation, score in zip(conversations, got, strict=True):
        seven = tiny_engine.tokenizer.convert_tokens_to_ids("7")
        reference = float(reference_logprobs(tiny_engine, conversation, "Score: ")[seven])
        assert score.logprobs["7"] == pytest.approx(reference, abs=1e-4)


def test_unpadded_suffixes_continue_the_prefix_in_one_split_pass(tiny_engine, monkeypatch) -> None:
    monkeypatch.setattr(te, "SOLO_ROW_TOKENS", 1)  # every suffix alone: no padding, no mask
    monkeypatch.setattr(ps, "CHUNK", 3)  # a chunked pass would show as extra forward calls
    passes, splits = (
        _counted(monkeypatch, type(tiny_engine.model), "forward"),
        _counted(monkeypatch, split_attention, "split_causal_sdpa"),
    )
    engine = engine_like(tiny_engine, max_batch_size=3)
    got = engine.score_candidates(GROUP, DIGITS, "Score: ")
    assert splits, "the suffixes must continue the shared prefix through split attention"
    assert len(passes) == 1 + len(GROUP)  # the prefix once, then one pass per suffix
    for conversation, score in zip(GROUP, got, strict=True):
        reference = reference_logprobs(tiny_engine, conversation, "Score: ")
        ids = [tiny_engine.tokenizer.convert_tokens_to_ids(d) for d in DIGITS]
        expected = {d: float(reference[i]) for d, i in zip(DIGITS, ids, strict=True)}
        assert score.logprobs == pytest.approx(expected, abs=1e-4)


def _counted(monkeypatch, owner: object, name: str) -> list[int]:
    calls: list[int] = []
    original = getattr(owner, name)

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, counting)
    return calls


def test_chunked_and_padded_scoring_matches_one_pass(tiny_engine, monkeypatch) -> None:
    monkeypatch.setattr(ps, "CHUNK", 5)
    conversations = [*GROUP, *OTHERS]
    for share in (True, False):
        engine = engine_like(tiny_engine, max_batch_size=4, share_prefixes=share)
        engine.score_batch_tokens = 10_000  # padded batches of unequal rows, run in chunks
        for conversation, score in zip(
            conversations, engine.score_candidates(conversations, DIGITS, "Score: "), strict=True
        ):
            reference = reference_logprobs(tiny_engine, conversation, "Score: ")
            ids = [tiny_engine.tokenizer.convert_tokens_to_ids(d) for d in DIGITS]
            expected = {d: float(reference[i]) for d, i in zip(DIGITS, ids, strict=True)}
            assert score.logprobs == pytest.approx(expected, abs=1e-4)


def plain_generate(engine: TransformersEngine, conversation, new_tokens: int) -> list[int]:
    """The library's own generate on one unpadded prompt (its default cache), greedy."""
    text = render_prompt(engine.tokenizer, conversation)
    ids = engine.tokenizer(text, add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        out = engine.model.generate(
            input_ids=torch.tensor([ids]), max_new_tokens=new_tokens, do_sample=False
        )
    tokens: list[int] = out[0, len(ids) :].tolist()
    return tokens


def test_generation_from_the_prefilled_cache_matches_plain_generate(
    tiny_engine, monkeypatch
) -> None:
    monkeypatch.setattr(ps, "CHUNK", 7)
    prefixes = _counted(monkeypatch, te, "prefix_cache")
    conversations = [*GROUP[:4], *OTHERS]
    engine = engine_like(tiny_engine, max_batch_size=8)
    engine.score_batch_tokens = 10_000  # prefill in padded, chunked batches too
    params = SamplingParams(max_new_tokens=12, temperature=0.0)
    generations = engine.generate(conversations, params)
    assert len(prefixes) == 1, "the group's shared prefix is prefilled once"
    for conversation, generation in zip(conversations, generations, strict=True):
        expected = plain_generate(tiny_engine, conversation, 12)
        eos = tiny_engine.tokenizer.eos_token_id
        cut = expected.index(eos) + 1 if eos in expected else len(expected)
        assert generation.token_ids == expected[:cut]


def test_seeded_sampling_does_not_depend_on_prefill_chunks(tiny_engine, monkeypatch) -> None:
    engine = engine_like(tiny_engine, max_batch_size=8)
    params = SamplingParams(max_new_tokens=10, temperature=1.0, seed=5)
    whole = engine.generate(GROUP, params)
    monkeypatch.setattr(ps, "CHUNK", 6)
    chunked = engine.generate(GROUP, params)
    assert [g.token_ids for g in chunked] == [g.token_ids for g in whole]
    for a, b in zip(chunked, whole, strict=True):
        assert a.logprobs == pytest.approx(b.logprobs, abs=1e-4)
