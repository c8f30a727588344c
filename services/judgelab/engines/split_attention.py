"""Prefill attention after a cached prefix without an explicit mask (CPU).

Rows that continue a cache (a judge's shared instructions, a rollout group's question) need
bottom-right causal attention: query ``i`` sees the whole prefix and the new positions up to
``i``. SDPA's ``is_causal`` is top-left aligned, so the library passes an explicit mask, and the
CPU kernel then computes the masked-out triangle too. Here the attention is split in two
flash-attention calls, the prefix without a mask and the new positions with ``is_causal``, and
their outputs are combined by their log-sum-exps: exact, and the triangle is skipped.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers.integrations.sdpa_attention import repeat_kv

from judgelab.engines.mask_memo import MaskMemo

_flash_with_lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu


def applies(query: torch.Tensor, key: torch.Tensor, mask: torch.Tensor | None) -> bool:
    """Several query positions after cached ones, on CPU, with a mask that hides only the
    future (no padding)."""
    return (
        query.device.type == "cpu"
        and 1 < query.shape[2] < key.shape[2]
        and mask is not None
        and _bottom_right_causal.of(mask)
    )


def split_causal_sdpa(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    scaling: float | None = None,
    dropout: float = 0.0,
    **_: Any,
) -> tuple[torch.Tensor, None]:
    """Bottom-right causal attention of ``query`` (batch, heads, new, dim) over ``key`` and
    ``value`` (batch, kv heads, cached + new, dim); output (batch, new, heads, dim) as the
    library's SDPA returns it."""
    if dropout and module.training:
        raise ValueError("split attention is for inference: dropout must be off")
    groups = query.shape[1] // key.shape[1]
    # One dtype, as autocast gives SDPA (a bfloat16 query over a float32 cache); the kernel
    # is called directly, so autocast does not cast for it.
    key, value = repeat_kv(key.to(query.dtype), groups), repeat_kv(value.to(query.dtype), groups)
    cut = key.shape[2] - query.shape[2]
    old, old_lse = _flash_with_lse(query, key[:, :, :cut], value[:, :, :cut], scale=scaling)
    new, new_lse = _flash_with_lse(
        query, key[:, :, cut:], value[:, :, cut:], is_causal=True, scale=scaling
    )
    return merge_by_lse(old, old_lse, new, new_lse).to(query.dtype), None


def merge_by_lse(
    first: torch.Tensor, first_lse: torch.Tensor, second: torch.Tensor, second_lse: torch.Tensor
) -> torch.Tensor:
    """Softmax attention over two disjoint key sets, from each set's output (batch, heads,
    queries, dim) and log-sum-exp (batch, heads, queries); (batch, queries, heads, dim).

    The first set's share of the total weight is ``e^a / (e^a + e^b) = sigmoid(a - b)``.
    """
    share = torch.sigmoid(first_lse.float() - second_lse.float()).transpose(1, 2).unsqueeze(-1)
    first, second = first.transpose(1, 2).float(), second.transpose(1, 2).float()
    return torch.lerp(second, first, share).contiguous()


def _is_bottom_right_causal(mask: torch.Tensor) -> bool:
    if mask.dtype != torch.bool or mask.dim() != 4 or mask.shape[1] != 1:
        return False
    queries, keys = mask.shape[-2:]
    wanted = torch.ones(queries, keys, dtype=torch.bool, device=mask.device)
    wanted = torch.tril(wanted, diagonal=keys - queries)
    return bool((mask == wanted).all())


_bottom_right_causal: MaskMemo[bool] = MaskMemo(_is_bottom_right_causal)
