"""A decoding cache kept per row group (``engines/grouped_cache``)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from judgelab.engines import ChatMessage, SamplingParams
from judgelab.engines import ragged_attention as ra
from judgelab.engines.grouped_cache import (
    GroupedLayer,
    decoding_groups,
    kv_bytes_per_token,
)
from judgelab.engines.prefix_sharing import GrowingLayer

HEADS, DIM = 2, 4


def kv(rows: int, positions: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    shape = (rows, HEADS, positions, DIM)
    return torch.randn(shape, generator=generator), torch.randn(shape, generator=generator)


def filled(layer: GrowingLayer, lengths: list[int], width: int) -> GrowingLayer:
    """``layer`` holding rows of ``lengths`` right-aligned at ``width`` (as the engine's prefill
    leaves them), then one decoding step."""
    keys, values = kv(len(lengths), width, seed=1)
    layer.allocate(len(lengths), keys, values)
    for row, length in enumerate(lengths):
        layer.place(row, keys[row, :, width - length :], values[row, :, width - length :], width)
    layer.set_length(width)
    step_keys, step_values = kv(len(lengths), 1, seed=2)
    layer.update(step_keys, step_values)
    return layer


LENGTHS = [3, 4, 30, 31, 60]
WIDTH, CAPACITY = 60, 70


def test_each_group_holds_its_rows_real_positions_as_the_padded_cache_does() -> None:
    groups = [(0, 2, 56), (2, 4, 29), (4, 5, 0)]
    grouped = filled(GroupedLayer(CAPACITY, groups), LENGTHS, WIDTH)
    padded = filled(GrowingLayer(CAPACITY), LENGTHS, WIDTH)
    keys, values = grouped.grouped()
    whole_keys, whole_values = padded.contents()
    assert keys.groups == tuple(groups)
    for (begin, end, start), part_keys, part_values in zip(
        groups, keys.parts, values.parts, strict=True
    ):
        assert part_keys.shape[2] == WIDTH + 1 - start
        for row in range(begin, end):
            real = slice(WIDTH - LENGTHS[row], WIDTH + 1)
            own = slice(WIDTH - LENGTHS[row] - start, WIDTH + 1 - start)
            assert torch.equal(part_keys[row - begin, :, own], whole_keys[row, :, real])
            assert torch.equal(part_values[row - begin, :, own], whole_values[row, :, real])


def test_memory_follows_the_real_lengths(monkeypatch) -> None:
    monkeypatch.setattr(ra, "GROUP_OVERHEAD", 4)
    groups = decoding_groups(LENGTHS, CAPACITY)
    layer = filled(GroupedLayer(CAPACITY, groups), LENGTHS, WIDTH)
    held = sum(part.shape[0] * part.shape[2] for part in layer._key_parts)
    assert held < 0.55 * len(LENGTHS) * CAPACITY  # padded: every row as wide as the longest
    assert held >= sum(length + CAPACITY - WIDTH for length in LENGTHS)


def test_attention_over_groups_equals_attention_over_the_padded_cache() -> None:
    groups = [(0, 2, 56), (2, 4, 29), (4, 5, 0)]
    grouped = filled(GroupedLayer(CAPACITY, groups), LENGTHS, WIDTH)
    padded = filled(GrowingLayer(CAPACITY), LENGTHS, WIDTH)
    mask = torch.zeros(len(LENGTHS), 1, 1, WIDTH + 1, dtype=torch.bool)
    for row, length in enumerate(LENGTHS):
        mask[row, ..., WIDTH - length :] = True
    module = SimpleNamespace(num_key_value_groups=2, is_causal=True, training=False)
    query = torch.randn(len(LENGTHS), 2 * HEADS, 1, DIM)
    expected, _ = sdpa_attention_forward(module, query, *padded.contents(), mask, scaling=0.5)
    got, _ = ra.ragged_sdpa(module, query, *grouped.grouped(), mask, scaling=0.5)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)


def test_misplaced_rows_and_batches_are_refused() -> None:
    layer = GroupedLayer(CAPACITY, [(0, 1, 50), (1, 2, 0)])
    keys, values = kv(2, 20, seed=0)
    with pytest.raises(ValueError, match="cover 2 rows, the batch has 3"):
        layer.allocate(3, keys, values)
    layer.allocate(2, keys, values)
    with pytest.raises(ValueError, match="before its group's start"):
        layer.place(0, keys[0], values[0], 60)  # 20 positions ending at 60 start at 40 < 50
    with pytest.raises(TypeError, match="grouped"):
        layer.contents()


def test_cache_bytes_per_token_of_the_tiny_model(tiny_engine) -> None:
    config = tiny_engine.model.config  # 2 layers, 2 key/value heads of 16 dims
    assert kv_bytes_per_token(config, torch.float32) == 2 * 2 * 2 * 16 * 4
    assert kv_bytes_per_token(config, torch.bfloat16) == 2 * 2 * 2 * 16 * 2


def test_engine_decodes_rows_of_very_different_lengths_in_one_grouped_batch(
    tiny_engine, monkeypatch
) -> None:
    monkeypatch.setattr(ra, "GROUP_OVERHEAD", 1)
    caches: list[object] = []
    real = tiny_engine._prefilled
    monkeypatch.setattr(tiny_engine, "_prefilled", lambda *a: caches.append(real(*a)) or caches[-1])
    conversations = [
        [ChatMessage("user", "hi")],
        [ChatMessage("user", "a much longer question " * 20)],
        [ChatMessage("user", "why? " * 3)],
    ]
    params = SamplingParams(max_new_tokens=8, temperature=0.0)
    grouped = tiny_engine.generate(conversations, params)
    assert len(caches) == 1
    layer = caches[0].layers[0]  # type: ignore[attr-defined]
    assert isinstance(layer, GroupedLayer) and len(layer.groups) > 1
    monkeypatch.setattr(ra, "applies", lambda model: False)
    for conversation, together in zip(conversations, grouped, strict=True):
        alone = tiny_engine.generate([conversation], params)[0]
        assert together.token_ids == alone.token_ids
        assert together.logprobs == pytest.approx(alone.logprobs, abs=1e-5)
