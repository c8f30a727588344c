"""Group-normalised GRPO advantages, with TRL's conventions.

Mirrors ``GRPOTrainer._generate_and_score_completions`` of TRL 1.16 (``scale_rewards`` "group" /
"none", ``multi_objective_aggregation="sum_then_normalize"``): the baseline is the group's mean,
the scale its *unbiased* (Bessel-corrected) standard deviation, and ``eps`` is added to the std,
not under the square root: ``(r - mean) / (std + eps)``. A NaN reward means "unscorable": it is
left out of its group's mean and std and gets advantage 0, as in TRL.
"""

from __future__ import annotations

import torch
from torch import Tensor

TRL_EPS = 1e-4


def group_advantages(
    rewards: Tensor, group_size: int, scale_rewards: bool = True, eps: float = TRL_EPS
) -> Tensor:
    """Advantages of ``rewards`` ([n_groups * G] or [n_groups, G], groups contiguous), same shape.

    A group whose rewards are all equal gets advantage 0 (its std is 0, and 0 / eps is 0).
    """
    if group_size < 1:
        raise ValueError(f"group_size must be at least 1, got {group_size}")
    if rewards.numel() % group_size:
        raise ValueError(f"{rewards.numel()} rewards do not split into groups of {group_size}")
    values = rewards if rewards.is_floating_point() else rewards.float()
    grouped = values.reshape(-1, group_size)
    mean = torch.nanmean(grouped, dim=1, keepdim=True)
    advantages = grouped - mean
    if scale_rewards:
        advantages = advantages / (_nanstd(grouped, mean) + eps)
    return torch.nan_to_num(advantages, nan=0.0).reshape(rewards.shape)


def _nanstd(grouped: Tensor, mean: Tensor) -> Tensor:
    """Unbiased std over dim 1 ignoring NaNs; NaN where fewer than two values (as trl's nanstd)."""
    count = (~torch.isnan(grouped)).sum(dim=1, keepdim=True)
    variance = torch.nanmean((grouped - mean) ** 2, dim=1, keepdim=True)
    corrected = variance * count / (count - 1).clamp(min=1)
    return torch.where(count > 1, corrected, torch.full_like(corrected, float("nan"))).sqrt()
