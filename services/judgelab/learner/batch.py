"""Training groups (a scored group joined with its rollouts) and their padded tensors.

Prompts are left-padded and completions right-padded, as TRL does; ``position_ids`` count only
real tokens (as ``generate`` does), so a row's log-probs do not depend on how much padding its
batch needs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from judgelab.engines.base import ChatMessage
from judgelab.engines.chat import render_prompt
from judgelab.queues.messages import Prompt, RolloutGroup, ScoredGroup


@dataclass(frozen=True)
class TrainGroup:
    """One prompt's G completions with their rewards (NaN = unscorable), ready to train on."""

    group_id: str
    policy_version: int
    prompt_ids: tuple[int, ...]
    completions: tuple[tuple[int, ...], ...]
    rewards: tuple[float, ...]
    rollout_ids: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.group_id:
            raise ValueError("group_id must not be empty")
        if not self.prompt_ids:
            raise ValueError(f"group {self.group_id}: empty prompt")
        if len(self.completions) != len(self.rewards) or not self.completions:
            raise ValueError(f"group {self.group_id}: need one reward per completion (>= 1)")
        if self.rollout_ids and len(self.rollout_ids) != len(self.completions):
            raise ValueError(f"group {self.group_id}: need one rollout id per completion")
        if self.policy_version < 0:
            raise ValueError(f"group {self.group_id}: negative policy_version")

    @property
    def size(self) -> int:
        return len(self.completions)


@dataclass(frozen=True)
class Batch:
    """Padded tensors of some groups' rows (one row per completion)."""

    input_ids: Tensor  # [B, P + C]
    attention_mask: Tensor  # [B, P + C]
    position_ids: Tensor  # [B, P + C]
    completion_mask: Tensor  # [B, C]
    completion_width: int


def prompt_token_ids(tokenizer: Any, prompt: Prompt) -> list[int]:
    """The ids the rollout generator fed the model: chat template + assistant header."""
    turns = [ChatMessage("user", prompt)] if isinstance(prompt, str) else prompt
    text = render_prompt(tokenizer, turns)
    ids: list[int] = tokenizer(text, add_special_tokens=False)["input_ids"]
    return ids


def join_group(
    scored: ScoredGroup, rollouts: RolloutGroup, prompt_ids: Sequence[int]
) -> TrainGroup:
    """A scored group with its rollouts' token ids; invalid judgements get reward NaN."""
    if scored.group_id != rollouts.group_id:
        raise ValueError(f"scored group {scored.group_id} joined with {rollouts.group_id}")
    by_id = {r.id: r for r in rollouts.rollouts}
    missing = [rid for rid in scored.rollout_ids if rid not in by_id]
    if missing or len(by_id) != len(scored.rollout_ids):
        raise ValueError(f"group {scored.group_id}: rollout ids differ from the scored ones")
    rewards = [
        reward if valid and math.isfinite(reward) else math.nan
        for reward, valid in zip(scored.rewards, scored.valid, strict=True)
    ]
    return TrainGroup(
        group_id=scored.group_id,
        policy_version=rollouts.policy_version,
        prompt_ids=tuple(prompt_ids),
        completions=tuple(tuple(by_id[rid].token_ids) for rid in scored.rollout_ids),
        rewards=tuple(rewards),
        rollout_ids=tuple(scored.rollout_ids),
    )


def widths(groups: Sequence[TrainGroup]) -> tuple[int, int]:
    """(longest prompt, longest completion, at least 1) over ``groups``."""
    prompt = max(len(g.prompt_ids) for g in groups)
    completion = max(1, *(len(c) for g in groups for c in g.completions))
    return prompt, completion


def collate(groups: Sequence[TrainGroup], pad_id: int, width: tuple[int, int]) -> Batch:
    """Rows of ``groups`` padded to ``width`` = (prompt width, completion width)."""
    prompt_w, completion_w = width
    rows, masks = [], []
    for group in groups:
        prompt_pad = prompt_w - len(group.prompt_ids)
        for completion in group.completions:
            tail = completion_w - len(completion)
            if prompt_pad < 0 or tail < 0:
                raise ValueError(f"group {group.group_id} is wider than {width}")
            rows.append([pad_id] * prompt_pad + [*group.prompt_ids, *completion] + [pad_id] * tail)
            masks.append(
                [0] * prompt_pad + [1] * (len(group.prompt_ids) + len(completion)) + [0] * tail
            )
    input_ids = torch.tensor(rows, dtype=torch.long)
    attention_mask = torch.tensor(masks, dtype=torch.long)
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    return Batch(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids,
        completion_mask=attention_mask[:, prompt_w:],
        completion_width=completion_w,
    )


def check_vocab(groups: Sequence[TrainGroup], vocab_size: int) -> None:
    """ValueError naming the first group with a token id outside the vocabulary."""
    for group in groups:
        ids = [*group.prompt_ids, *(t for c in group.completions for t in c)]
        if any(t < 0 or t >= vocab_size for t in ids):
            raise ValueError(
                f"group {group.group_id}: token id outside the vocabulary 0..{vocab_size - 1}"
            )
