"""Decoding attention that skips left padding: same outputs as the library's SDPA."""

from __future__ import annotations

import itertools
import random
from types import SimpleNamespace

import pytest
import torch
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from judgelab.engines import ChatMessage, SamplingParams
from judgelab.engines import ragged_attention as ra
from judgelab.engines.ragged_attention import ragged_sdpa, row_groups


def _cost(first: list[int], width: int, groups: list[tuple[int, int, int]], overhead: int) -> int:
    return sum(overhead + (end - begin) * (width - start) for begin, end, start in groups)


def test_row_groups_are_the_cheapest_contiguous_split() -> None:
    rng = random.Random(0)
    for _ in range(30):
        width = 100
        first = sorted((rng.randrange(0, 90) for _ in range(6)), reverse=True)
        groups = row_groups(first, width, overhead=20)
        assert [g[0] for g in groups][0] == 0 and groups[-1][1] == 6
        assert all(a[1] == b[0] for a, b in itertools.pairwise(groups))
        assert all(start == min(first[b:e]) for b, e, start in groups)
        best = min(
            _cost(first, width, _groups(first, cuts), 20)
            for cuts in itertools.product([0, 1], repeat=5)
        )
        assert _cost(first, width, groups, 20) == best


def _groups(first: list[int], cuts: tuple[int, ...]) -> list[tuple[int, int, int]]:
    bounds = [0, *[i + 1 for i, cut in enumerate(cuts) if cut], len(first)]
    return [(b, e, min(first[b:e])) for b, e in itertools.pairwise(bounds)]


def test_a_costly_extra_call_keeps_one_group() -> None:
    assert row_groups([50, 40, 0], 100, overhead=10_000) == [(0, 3, 0)]
    assert row_groups([90, 90, 0], 100, overhead=1) == [(0, 2, 90), (2, 3, 0)]


def _attention_inputs(lengths: list[int], width: int) -> tuple[torch.Tensor, ...]:
    torch.manual_seed(0)
    rows = len(lengths)
    query = torch.randn(rows, 4, 1, 8)
    key, value = torch.randn(rows, 2, width, 8), torch.randn(rows, 2, width, 8)
    mask = torch.zeros(rows, 1, 1, width, dtype=torch.bool)
    for row, length in enumerate(lengths):
        mask[row, ..., width - length :] = True
    return query, key, value, mask


def test_ragged_sdpa_equals_sdpa_on_left_padded_rows(monkeypatch) -> None:
    monkeypatch.setattr(ra, "GROUP_OVERHEAD", 4)
    module = SimpleNamespace(num_key_value_groups=2, is_causal=True, training=False)
    query, key, value, mask = _attention_inputs([3, 5, 40, 64, 64], 64)
    expected, _ = sdpa_attention_forward(module, query, key, value, mask, scaling=0.3)
    got, _ = ragged_sdpa(module, query, key, value, mask, scaling=0.3)
    assert ra._plans.value == [(0, 2, 59), (2, 3, 24), (3, 5, 0)]  # padding really skipped
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)


def test_prefill_and_unpadded_rows_take_the_library_path(monkeypatch) -> None:
    module = SimpleNamespace(num_key_value_groups=2, is_causal=True, training=False)
    calls: list[int] = []
    monkeypatch.setattr(ra, "row_groups", lambda *a, **k: calls.append(1) or [])
    query, key, value, _ = _attention_inputs([8, 8], 8)
    ragged_sdpa(module, query, key, value, None)  # no mask: nothing padded
    prefill = torch.randn(2, 4, 8, 8)
    ragged_sdpa(module, prefill, key, value, None)
    assert calls == []


def test_engine_generation_is_unchanged_and_the_model_restored(tiny_engine, monkeypatch) -> None:
    monkeypatch.setattr(ra, "GROUP_OVERHEAD", 1)
    planned: list[list[tuple[int, int, int]]] = []
    real = ra.row_groups
    monkeypatch.setattr(ra, "row_groups", lambda *a: planned.append(real(*a)) or planned[-1])
    conversations = [
        [ChatMessage("user", "hi")],
        [ChatMessage("user", "a much longer question " * 12)],
        [ChatMessage("user", "what is the best score for this answer, and why? " * 3)],
    ]
    params = SamplingParams(max_new_tokens=10, temperature=0.0, top_logprobs=3)
    ragged = tiny_engine.generate(conversations, params)
    assert tiny_engine.model.config._attn_implementation == "sdpa"
    assert planned and all(len(groups) > 1 for groups in planned)
    monkeypatch.setattr(ra, "applies", lambda model: False)
    plain = tiny_engine.generate(conversations, params)
    assert [g.token_ids for g in ragged] == [g.token_ids for g in plain]
    for a, b in zip(ragged, plain, strict=True):
        assert a.logprobs == pytest.approx(b.logprobs, abs=1e-5)


def test_ragged_decoding_is_used_on_cpu_sdpa_only(tiny_engine) -> None:
    model = tiny_engine.model
    assert ra.applies(model)
    with ra.ragged_decoding(model):
        assert model.config._attn_implementation == ra.NAME
    assert model.config._attn_implementation == "sdpa"
    model.set_attn_implementation("eager")
    try:
        assert not ra.applies(model)
        with ra.ragged_decoding(model):
            assert model.config._attn_implementation == "eager"
    finally:
        model.set_attn_implementation("sdpa")


def test_plans_are_per_thread() -> None:
    import threading

    _, _, _, mask = _attention_inputs([3, 64], 64)
    main_groups = ra._plans.of(mask)
    seen: list[object] = []
    thread = threading.Thread(target=lambda: seen.append(ra._plans.mask))
    thread.start()
    thread.join()
    assert seen == [None] and ra._plans.value == main_groups


def test_ragged_attention_counts_as_active_only_when_the_model_really_runs_it(
    tiny_engine,
) -> None:
    model = tiny_engine.model
    assert not ra.active(model)
    with ra.ragged_decoding(model):
        assert ra.active(model)
        model.forward = lambda *args, **kwargs: None  # a trainer's patch: other modules may run
        try:
            assert not ra.active(model)
        finally:
            del model.forward
