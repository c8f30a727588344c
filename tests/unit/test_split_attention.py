"""Attention after a cached prefix, split in two flash calls: same outputs as the library's
SDPA with its explicit bottom-right causal mask, and only where that mask hides no padding."""

from __future__ import annotations

import pytest
import torch
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from judgelab.engines import split_attention as sa
from judgelab.engines.ragged_attention import ragged_sdpa


def _inputs(rows: int, cached: int, new: int, dtype: torch.dtype = torch.float32):
    torch.manual_seed(0)
    # The model's layout: (batch, heads, positions, dim) views of (batch, positions, heads, dim).
    query = torch.randn(rows, new, 6, 16, dtype=dtype).transpose(1, 2)
    key = torch.randn(rows, 2, cached + new, 16, dtype=dtype)
    value = torch.randn(rows, 2, cached + new, 16, dtype=dtype)
    return query, key, value


def _bottom_right_mask(rows: int, new: int, total: int) -> torch.Tensor:
    mask = torch.ones(new, total, dtype=torch.bool).tril(diagonal=total - new)
    return mask.expand(rows, 1, new, total)


def _module() -> torch.nn.Module:
    module = torch.nn.Module().eval()
    module.is_causal = True  # type: ignore[assignment]
    module.num_key_value_groups = 3  # type: ignore[assignment]
    return module


@pytest.mark.parametrize(("cached", "new"), [(1, 2), (7, 5), (40, 130), (300, 45)])
def test_split_attention_equals_sdpa_with_the_explicit_mask(cached: int, new: int) -> None:
    query, key, value = _inputs(2, cached, new)
    mask = _bottom_right_mask(2, new, cached + new)
    expected, _ = sdpa_attention_forward(_module(), query, key, value, mask, scaling=0.3)
    got, _ = sa.split_causal_sdpa(_module(), query, key, value, scaling=0.3)
    assert got.shape == expected.shape == (2, new, 6, 16)
    assert torch.allclose(got, expected, atol=1e-5)


def test_merge_by_lse_weights_each_key_set_by_its_mass() -> None:
    first, second = torch.zeros(1, 1, 2, 3), torch.ones(1, 1, 2, 3)
    lse = torch.tensor([[[0.0, 5.0]]])
    merged = sa.merge_by_lse(first, lse, second, torch.zeros(1, 1, 2))
    # Equal masses: the midpoint. A first set e^5 times heavier: mostly the first output.
    assert torch.allclose(merged[0, 0], torch.full((1, 3), 0.5))
    assert torch.allclose(merged[0, 1], torch.full((1, 3), 1 / (1 + torch.e**5)))


def test_bfloat16_inputs_keep_their_dtype() -> None:
    query, key, value = _inputs(1, 20, 9, torch.bfloat16)
    got, _ = sa.split_causal_sdpa(_module(), query, key, value)
    mask = _bottom_right_mask(1, 9, 29)
    expected, _ = sdpa_attention_forward(_module(), query, key, value, mask)
    assert got.dtype == torch.bfloat16
    assert torch.allclose(got.float(), expected.float(), atol=3e-2)


def test_a_bfloat16_query_over_a_float32_cache_runs_as_under_autocast() -> None:
    query, key, value = _inputs(1, 20, 9)
    mask = _bottom_right_mask(1, 9, 29)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got, _ = sa.split_causal_sdpa(_module(), query.bfloat16(), key, value)
        expected, _ = sdpa_attention_forward(_module(), query.bfloat16(), key, value, mask)
    assert got.dtype == expected.dtype == torch.bfloat16
    assert torch.allclose(got.float(), expected.float(), atol=3e-2)


def test_only_a_pure_bottom_right_causal_mask_applies() -> None:
    query, key, _ = _inputs(2, 6, 4)
    mask = _bottom_right_mask(2, 4, 10).clone()
    assert sa.applies(query, key, mask)
    padded = mask.clone()
    padded[1, :, :, 6] = False  # row 1 has a padding position between prefix and row
    assert not sa.applies(query, key, padded)
    assert not sa.applies(query, key, None)
    assert not sa.applies(query, key, mask.float())  # an additive mask is not read
    assert not sa.applies(query[:, :, :1], key, mask[:, :, :1])  # decoding: one position
    same = _bottom_right_mask(2, 10, 10)
    assert not sa.applies(torch.randn(2, 6, 10, 16), key, same)  # no cached positions


def test_ragged_sdpa_takes_the_split_path_only_when_it_applies(monkeypatch) -> None:
    calls = []
    original = sa.split_causal_sdpa

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(sa, "split_causal_sdpa", counted)
    query, key, value = _inputs(2, 6, 4)
    mask = _bottom_right_mask(2, 4, 10).clone()
    got, _ = ragged_sdpa(_module(), query, key, value, mask)
    padded = mask.clone()
    padded[1, :, :, 6] = False
    with_padding, _ = ragged_sdpa(_module(), query, key, value, padded)
    assert len(calls) == 1
    assert torch.equal(
        with_padding, sdpa_attention_forward(_module(), query, key, value, padded)[0]
    )
    expected, _ = sdpa_attention_forward(_module(), query, key, value, mask)
    assert torch.allclose(got, expected, atol=1e-5)


def test_dropout_in_training_is_refused() -> None:
    query, key, value = _inputs(1, 3, 2)
    module = _module().train()
    with pytest.raises(ValueError, match="dropout"):
        sa.split_causal_sdpa(module, query, key, value, dropout=0.1)
