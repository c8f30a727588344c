"""Decoding attention that does not read left padding (CPU).

A decoding batch's cache is as wide as its longest row, and SDPA reads every cached position,
masked or not; on CPU a decoding step is memory-bound, so a row a third as long as the longest
costs as much as the longest. Here the rows of a decoding step are split into contiguous groups
(a decoding batch is sorted by length) and each group's attention reads the cache only from the
first position any of its rows attends to: attention work follows the real lengths, while the
matmuls stay batched over all rows. Prefill and training (more than one query position) take
the library's SDPA unchanged.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from judgelab.engines import split_attention
from judgelab.engines.mask_memo import MaskMemo

NAME = "judgelab_ragged_sdpa"
#: Cached positions one more SDPA call per layer is worth (its dispatch cost, measured on
#: 2 CPU cores with the built-in model: ~40 us per call against ~0.17 us per position read).
GROUP_OVERHEAD = 256

Group = tuple[int, int, int]  # rows [begin, end) read the cache from position ``start`` on


@dataclass(frozen=True)
class GroupedKV:
    """Keys (or values) kept by row group (``grouped_cache``): ``parts[i]`` holds rows
    ``[begin, end)`` of ``groups[i]`` from its ``start`` position on, (rows, heads, positions,
    dim)."""

    groups: tuple[Group, ...]
    parts: tuple[torch.Tensor, ...]


def row_groups(first: Sequence[int], width: int, overhead: int = GROUP_OVERHEAD) -> list[Group]:
    """Contiguous row groups minimising ``overhead`` per group plus the positions read, each
    group reading from its rows' smallest first attended position up to ``width``."""
    count = len(first)
    best = [0.0] * (count + 1)
    cut = [0] * (count + 1)
    for end in range(1, count + 1):
        best[end] = float("inf")
        start = width
        for begin in range(end - 1, -1, -1):
            start = min(start, first[begin])
            cost = best[begin] + overhead + (end - begin) * (width - start)
            if cost < best[end]:
                best[end], cut[end] = cost, begin
    groups: list[Group] = []
    end = count
    while end > 0:
        begin = cut[end]
        groups.append((begin, end, min(first[begin:end])))
        end = begin
    return groups[::-1]


def _plan(mask: torch.Tensor) -> list[Group]:
    """The row groups of a padded decoding step, from each row's first attended position."""
    first = mask[:, 0, -1, :].int().argmax(dim=-1).tolist()
    return row_groups(first, mask.shape[-1], GROUP_OVERHEAD)


_plans: MaskMemo[list[Group]] = MaskMemo(_plan)


def ragged_sdpa(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor | GroupedKV,
    value: torch.Tensor | GroupedKV,
    attention_mask: torch.Tensor | None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """SDPA, run per row group when one query position of several padded rows attends."""
    if isinstance(key, GroupedKV) and isinstance(value, GroupedKV):
        return _grouped_sdpa(module, query, key, value, attention_mask, **kwargs)
    assert isinstance(key, torch.Tensor) and isinstance(value, torch.Tensor)
    if split_attention.applies(query, key, attention_mask):
        return split_attention.split_causal_sdpa(module, query, key, value, **kwargs)
    if not _is_padded_decoding(query, attention_mask):
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    assert attention_mask is not None
    groups = _plans.of(attention_mask)
    if len(groups) == 1 and groups[0][2] == 0:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    outputs = [
        sdpa_attention_forward(
            module,
            query[begin:end],
            key[begin:end, :, start:],
            value[begin:end, :, start:],
            attention_mask[begin:end, :, :, start:],
            **kwargs,
        )[0]
        for begin, end, start in groups
    ]
    return torch.cat(outputs, dim=0), None


def _grouped_sdpa(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: GroupedKV,
    value: GroupedKV,
    attention_mask: torch.Tensor | None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    # No mask: no row is padded (the library drops an all-true mask), so every group starts at 0.
    parts = zip(key.groups, key.parts, value.parts, strict=True)
    outputs = [
        sdpa_attention_forward(
            module,
            query[begin:end],
            keys,
            values,
            None if attention_mask is None else attention_mask[begin:end, :, :, start:],
            **kwargs,
        )[0]
        for (begin, end, start), keys, values in parts
    ]
    return torch.cat(outputs, dim=0), None


def _is_padded_decoding(query: torch.Tensor, mask: torch.Tensor | None) -> bool:
    return (
        query.shape[2] == 1
        and query.shape[0] > 1
        and mask is not None
        and mask.dtype == torch.bool
        and mask.dim() == 4
        and mask.shape[0] == query.shape[0]
    )


AttentionInterface.register(NAME, ragged_sdpa)
AttentionMaskInterface.register(NAME, sdpa_mask)


def applies(model: Any) -> bool:
    """Models on CPU with the library's SDPA attention (a per-group loop would stall a GPU)."""
    implementation = getattr(model.config, "_attn_implementation", None)
    return implementation == "sdpa" and model.device.type == "cpu"


def active(model: Any) -> bool:
    """Whether ``model``'s attention layers run :func:`ragged_sdpa`: every config in it names
    it, and no forward set on the instance (a trainer's patch) may run other modules."""
    configs = [getattr(module, "config", None) for module in model.modules()]
    names = {getattr(c, "_attn_implementation", None) for c in configs if c is not None}
    return names == {NAME} and "forward" not in vars(model)


@contextlib.contextmanager
def ragged_decoding(model: Any) -> Iterator[None]:
    """``model`` decodes with :func:`ragged_sdpa` inside the block (when it :func:`applies`)."""
    if not applies(model):
        yield
        return
    model.set_attn_implementation(NAME)
    try:
        yield
    finally:
        model.set_attn_implementation("sdpa")
