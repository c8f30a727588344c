"""A decoding cache kept per row group, for decoding rows of very different lengths together.

A left-padded cache is as wide as its longest row for every row, so a decoding batch that mixes
a 400-token prompt with a 4000-token one holds ten times the first row's keys and values, and
the engine had to decode them in separate batches, each step of each batch paying the full pass
over the weights. Here the rows (sorted by length) are split into contiguous groups, as
``ragged_attention`` splits a step's attention; each group's buffers start at the first position
any of its rows attends to. Memory follows the real lengths, so one batch can hold them all;
:func:`judgelab.engines.ragged_attention.ragged_sdpa` reads each group's part directly.

Positions are those of the left-padded layout (a row of ``n`` tokens in a batch of width ``w``
sits at ``w - n .. w - 1``), so ``generate``'s masks and positions stay as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from judgelab.engines import ragged_attention
from judgelab.engines.prefix_sharing import GrowingLayer
from judgelab.engines.ragged_attention import Group, GroupedKV


class GroupedLayer(GrowingLayer):
    """A :class:`GrowingLayer` whose rows live in per-group buffers (``groups`` cover the rows,
    in order); ``update`` returns :class:`GroupedKV` instead of whole tensors."""

    def __init__(self, capacity: int, groups: Sequence[Group]) -> None:
        super().__init__(capacity)
        self.groups = tuple(groups)
        self._group_of = [index for index, (b, e, _) in enumerate(self.groups) for _ in range(b, e)]
        self._key_parts: list[torch.Tensor] = []
        self._value_parts: list[torch.Tensor] = []

    def allocate(self, rows: int, keys: torch.Tensor, values: torch.Tensor) -> None:
        if rows != len(self._group_of):
            raise ValueError(f"groups cover {len(self._group_of)} rows, the batch has {rows}")
        # The library's bookkeeping (dtype, device, initialised) without its whole buffers.
        self.dtype, self.device = keys.dtype, keys.device
        self.is_initialized = True
        heads, key_dim, value_dim = keys.shape[1], keys.shape[-1], values.shape[-1]
        for begin, end, start in self.groups:
            positions = self.capacity - start
            self._key_parts.append(keys.new_zeros((end - begin, heads, positions, key_dim)))
            self._value_parts.append(values.new_zeros((end - begin, heads, positions, value_dim)))
        self.set_length(self.length)

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.allocate(key_states.shape[0], key_states, value_states)

    def update(  # type: ignore[override]
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[GroupedKV, GroupedKV]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        end = self.length + key_states.shape[-2]
        if end > self.capacity:
            raise ValueError(f"cache holds {self.capacity} positions, {end} needed")
        parts = zip(self.groups, self._key_parts, self._value_parts, strict=True)
        for (begin, stop, start), keys, values in parts:
            if end > start:  # the step's positions this group's rows can attend to
                first = max(self.length, start)
                keys[:, :, first - start : end - start] = key_states[begin:stop, :, first - end :]
                values[:, :, first - start : end - start] = value_states[
                    begin:stop, :, first - end :
                ]
        self.set_length(end)
        return self.grouped()

    def place(self, row: int, keys: torch.Tensor, values: torch.Tensor, end: int) -> None:
        begin, _, start = self.groups[self._group_of[row]]
        first = end - keys.shape[-2]
        if first < start:
            raise ValueError(f"row {row} starts at {first}, before its group's start {start}")
        part = self._group_of[row]
        self._key_parts[part][row - begin, :, first - start : end - start] = keys
        self._value_parts[part][row - begin, :, first - start : end - start] = values

    def set_length(self, length: int) -> None:
        self.length = length
        # The library reads ``keys``/``values`` only for their dtype and device.
        if self._key_parts:
            self.keys, self.values = self._key_parts[0], self._value_parts[0]

    def grouped(self) -> tuple[GroupedKV, GroupedKV]:
        """Each group's keys and values up to the current length."""
        return self._written(self._key_parts), self._written(self._value_parts)

    def _written(self, parts: list[torch.Tensor]) -> GroupedKV:
        cut = [
            part[:, :, : max(0, self.length - start)]
            for (_, _, start), part in zip(self.groups, parts, strict=True)
        ]
        return GroupedKV(self.groups, tuple(cut))

    def contents(self) -> tuple[torch.Tensor, torch.Tensor]:
        raise TypeError("a grouped cache has no whole tensors; use grouped()")


def grouped_layers(config: Any, capacity: int, groups: Sequence[Group]) -> list[GroupedLayer]:
    layers = config.get_text_config(decoder=True).num_hidden_layers
    return [GroupedLayer(capacity, groups) for _ in range(layers)]


def decoding_groups(lengths: Sequence[int], capacity: int) -> list[Group]:
    """Row groups for left-padded rows of ``lengths`` decoded up to ``capacity`` positions."""
    width = max(lengths)
    first = [width - length for length in lengths]
    return ragged_attention.row_groups(first, capacity, ragged_attention.GROUP_OVERHEAD)


def kv_bytes_per_token(config: Any, dtype: torch.dtype) -> int:
    """Cache bytes one position of one row takes (keys and values of every layer)."""
    text = config.get_text_config(decoder=True)
    heads = getattr(text, "num_key_value_heads", None) or text.num_attention_heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    itemsize = torch.empty((), dtype=dtype).element_size()
    return int(2 * text.num_hidden_layers * heads * head_dim * itemsize)
