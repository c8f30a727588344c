"""Forward passes over many prompts for the transformers engine (CPU prefill is compute-bound,
so every padded or repeated token is wasted time).

* Shared prefixes: rows whose ids share a long common prefix (a judge's instructions + the
  question, for the G responses of one prompt) form a group whose prefix runs once; the
  partition of the sorted rows maximises the prefix tokens saved, ``(rows - 1) * prefix``,
  less what continuing from a cache costs (a given overhead per suffix token).
* Length batches: the rest (and each group's suffixes) run in batches of similar length whose
  padded size stays within a token budget, rows from a given length on alone (no padding);
  decoding batches minimise a per-step cost model.
* Chunks: a batch that needs an explicit attention mask (padding, or a cached prefix without
  ``split_attention``) runs ``CHUNK`` positions at a time, because SDPA then computes the
  masked-out upper triangle too; in chunks only each chunk's own triangle is wasted.
  Unpadded rows run in one pass (SDPA's causal kernel, or ``split_attention`` after a
  prefix, skips the triangle).
* A cache that grows in place (``GrowingLayer``): ``DynamicCache`` concatenates, copying the
  whole cache at every decode step, which on CPU costs as much as the attention on long
  prompts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import DynamicCache
from transformers.cache_utils import Cache, DynamicLayer

from judgelab.engines import ragged_attention

#: Shorter shared prefixes are not worth a separate pass.
MIN_SHARED_PREFIX = 32
#: Positions per forward pass of a masked batch (smaller wastes less masked attention).
CHUNK = 512
#: Extra cost of a suffix token run after a cached prefix (explicit mask, chunks), relative to
#: an unpadded one-pass token: measured 10-20% on 2 CPU cores with the built-in model.
SUFFIX_OVERHEAD = 0.15
#: The same when unpadded suffixes continue in one pass (``split_attention``): measured 0-6%
#: on 2 CPU cores with the built-in model, at 600 to 2,000 tokens.
SPLIT_SUFFIX_OVERHEAD = 0.05
#: Rows planned together at most (the grouping is quadratic in it).
PLAN_WINDOW = 256

#: Per layer: keys and values, each (rows, kv heads, tokens, head dim).
KeyValues = list[tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class PrefixGroup:
    """Rows (indices into the planned list) and the prefix length they share (0: none)."""

    rows: tuple[int, ...]
    prefix_len: int


def common_prefix_length(a: Sequence[int], b: Sequence[int]) -> int:
    limit = min(len(a), len(b))
    for i in range(limit):
        if a[i] != b[i]:
            return i
    return limit


def prefix_groups(
    sequences: Sequence[Sequence[int]],
    min_prefix: int = MIN_SHARED_PREFIX,
    suffix_overhead: float = SUFFIX_OVERHEAD,
) -> list[PrefixGroup]:
    """Rows partitioned into groups sharing a prefix of at least ``min_prefix`` tokens (every
    row keeps at least one token of its own) and singletons (``prefix_len`` 0)."""
    order = sorted(range(len(sequences)), key=lambda i: list(sequences[i]))
    groups: list[PrefixGroup] = []
    for start in range(0, len(order), PLAN_WINDOW):
        window = order[start : start + PLAN_WINDOW]
        rows = [sequences[i] for i in window]
        groups.extend(_partition(rows, window, min_prefix, suffix_overhead))
    return groups


def _partition(
    rows: list[Sequence[int]], ids: list[int], min_prefix: int, suffix_overhead: float
) -> list[PrefixGroup]:
    """Best split of sorted rows into contiguous groups (dynamic programming, O(n^2))."""
    n = len(rows)
    neighbour = [common_prefix_length(rows[i], rows[i + 1]) for i in range(n - 1)]
    tokens = [0]
    for row in rows:
        tokens.append(tokens[-1] + len(row))
    best = [0.0] * (n + 1)
    cut: list[tuple[int, int]] = [(0, 0)] * (n + 1)  # (group start, its prefix) ending at j
    for end in range(1, n + 1):
        best[end], cut[end] = best[end - 1], (end - 1, 0)
        prefix = len(rows[end - 1]) - 1
        for begin in range(end - 2, -1, -1):
            prefix = min(prefix, neighbour[begin], len(rows[begin]) - 1)
            if prefix < min_prefix:
                break
            size = end - begin
            suffix_tokens = tokens[end] - tokens[begin] - size * prefix
            gain = best[begin] + (size - 1) * prefix - suffix_overhead * suffix_tokens
            if gain > best[end]:
                best[end], cut[end] = gain, (begin, prefix)
    groups = []
    end = n
    while end > 0:
        begin, prefix = cut[end]
        groups.append(PrefixGroup(tuple(ids[begin:end]), prefix))
        end = begin
    return groups[::-1]


def length_batches(
    lengths: Sequence[int], max_rows: int, token_budget: int, solo_from: int | None = None
) -> list[list[int]]:
    """Row indices in batches of similar length: at most ``max_rows`` rows and, unless one row
    alone exceeds it, at most ``token_budget`` tokens once padded to the batch's longest row;
    rows of ``solo_from`` tokens or more alone."""
    if max_rows < 1:
        raise ValueError(f"max_rows must be >= 1, got {max_rows}")
    batches: list[list[int]] = []
    current: list[int] = []
    for row in sorted(range(len(lengths)), key=lambda i: lengths[i]):
        # Sorted ascending: the new row is the longest, so it sets the padded width.
        full = len(current) >= max_rows or (len(current) + 1) * lengths[row] > token_budget
        full = full or (solo_from is not None and lengths[row] >= solo_from)
        if current and full:
            batches.append(current)
            current = []
        current.append(row)
    if current:
        batches.append(current)
    return batches


def decode_batches(
    lengths: Sequence[int],
    max_rows: int,
    max_tokens: int,
    step_tokens: int,
    ragged: bool = False,
) -> list[list[int]]:
    """Row indices in batches for decoding, minimising the summed per-step cost
    ``step_tokens`` + the cache positions a step reads (a step's fixed cost, in cached tokens
    read, plus the cache: ``rows * padded width``, or the rows' own lengths when attention skips
    the padding and the cache is kept by row group, ``ragged``) over contiguous runs of the rows
    sorted by length; at most ``max_rows`` rows and, unless one row alone exceeds it,
    ``max_tokens`` cached tokens (the cache's memory, counted the same way) per batch."""
    if max_rows < 1:
        raise ValueError(f"max_rows must be >= 1, got {max_rows}")
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    summed = [0]
    for row in order:
        summed.append(summed[-1] + lengths[row])
    best = [0] * (len(order) + 1)
    start = [0] * (len(order) + 1)
    for end in range(1, len(order) + 1):
        width = lengths[order[end - 1]]
        best[end], start[end] = best[end - 1] + step_tokens + width, end - 1
        for begin in range(end - 2, max(-1, end - 1 - max_rows), -1):
            rows = end - begin
            read = summed[end] - summed[begin] if ragged else rows * width
            if read > max_tokens:
                break
            cost = best[begin] + step_tokens + read
            if cost < best[end]:
                best[end], start[end] = cost, begin
    batches = []
    end = len(order)
    while end > 0:
        batches.append(order[start[end] : end])
        end = start[end]
    return batches[::-1]


class GrowingLayer(DynamicLayer):
    """A ``DynamicLayer`` whose buffers hold ``capacity`` positions from the start, zeroed (so
    positions never written, i.e. padding, stay finite); each update writes in place."""

    def __init__(self, capacity: int) -> None:
        super().__init__()
        self.capacity = capacity
        self.length = 0

    def allocate(self, rows: int, keys: torch.Tensor, values: torch.Tensor) -> None:
        """Buffers for ``rows`` rows shaped like ``keys``/``values`` (rows, heads, -, dim)."""
        super().lazy_initialization(keys, values)
        heads = keys.shape[1]
        self._keys = keys.new_zeros((rows, heads, self.capacity, keys.shape[-1]))
        self._values = values.new_zeros((rows, heads, self.capacity, values.shape[-1]))

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.allocate(key_states.shape[0], key_states, value_states)

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        end = self.length + key_states.shape[-2]
        if end > self.capacity:
            raise ValueError(f"cache holds {self.capacity} positions, {end} needed")
        self._keys[:, :, self.length : end] = key_states
        self._values[:, :, self.length : end] = value_states
        self.set_length(end)
        return self.contents()

    def place(self, row: int, keys: torch.Tensor, values: torch.Tensor, end: int) -> None:
        """Write one row's (heads, tokens, dim) keys/values to end just before ``end``."""
        start = end - keys.shape[-2]
        self._keys[row, :, start:end] = keys
        self._values[row, :, start:end] = values

    def set_length(self, length: int) -> None:
        self.length = length
        self.keys, self.values = self._keys[:, :, :length], self._values[:, :, :length]

    def get_seq_length(self) -> int:
        return self.length

    def contents(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values written so far: (rows, heads, length, dim) each."""
        return self._keys[:, :, : self.length], self._values[:, :, : self.length]


def new_cache(config: Any, capacity: int) -> Cache:
    """Growing layers for ``capacity`` positions; the library's ``DynamicCache`` for models
    with sliding-window or other non-full attention layers."""
    if not growable(config):
        return DynamicCache(config=config)
    return Cache(layers=list(growing_layers(config, capacity)))


def growing_layers(config: Any, capacity: int) -> list[GrowingLayer]:
    layers = config.get_text_config(decoder=True).num_hidden_layers
    return [GrowingLayer(capacity) for _ in range(layers)]


def growable(config: Any) -> bool:
    text = config.get_text_config(decoder=True)
    layer_types = set(getattr(text, "layer_types", None) or ["full_attention"])
    return getattr(text, "sliding_window", None) is None and layer_types == {"full_attention"}


def run_chunked(
    model: Any, input_ids: torch.Tensor, mask: torch.Tensor, cache: Cache, prefix_len: int = 0
) -> torch.Tensor:
    """Feed left-padded rows into ``cache`` (which may hold a ``prefix_len``-token prefix shared
    by all rows) ``CHUNK`` positions at a time; the next-token logits (rows x vocab).

    Padding sits between prefix and row, masked, and positions count real tokens only, exactly
    as in one unpadded pass over prefix + row.
    """
    rows, width = input_ids.shape
    full_mask = torch.cat([mask.new_ones(rows, prefix_len), mask], dim=1)
    positions = prefix_len + (mask.cumsum(-1) - 1).clamp(min=0)
    one_pass = bool(mask.all()) and (prefix_len == 0 or ragged_attention.active(model))
    step = width if one_pass else CHUNK
    for start in range(0, width, step):
        end = min(width, start + step)
        out = model(
            input_ids=input_ids[:, start:end],
            attention_mask=full_mask[:, : prefix_len + end],
            position_ids=positions[:, start:end],
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )
    logits: torch.Tensor = out.logits[:, -1]
    return logits


def prefix_cache(model: Any, prefix: Sequence[int], device: torch.device) -> KeyValues:
    """Keys and values of every layer after ``prefix`` (one row)."""
    cache = new_cache(model.config, len(prefix))
    ids = torch.tensor([list(prefix)], device=device)
    run_chunked(model, ids, torch.ones_like(ids), cache)
    contents = []
    for layer in cache.layers:
        keys, values = getattr(layer, "keys", None), getattr(layer, "values", None)
        assert isinstance(keys, torch.Tensor) and isinstance(values, torch.Tensor)
        contents.append((keys, values))
    return contents


def with_prefix(config: Any, prefix: KeyValues, rows: int, capacity: int) -> Cache:
    """A new cache for ``rows`` rows that starts with ``prefix`` in every row."""
    cache = new_cache(config, capacity)
    for index, (keys, values) in enumerate(prefix):
        cache.update(keys.expand(rows, -1, -1, -1), values.expand(rows, -1, -1, -1), index)
    return cache
