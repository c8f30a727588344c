"""The GRPO objective: token-level clipped importance ratio, optional k3 KL to the reference.

Equal to TRL 1.16 ``GRPOTrainer._compute_loss`` with ``importance_sampling_level="token"``,
``delta=None``, ``top_entropy_quantile=1.0``, no entropy bonus, ``use_bias_correction_kl`` equal to
our ``bias_correction_kl`` (TRL's default is True; ours is False, the plain k3 term of GRPO):

- ``token-mean`` is TRL ``loss_type="dapo"``: every completion token of the optimiser step weighs
  the same (sum over tokens / number of tokens). With ``num_items`` left out the count is this
  batch's, which is TRL ``"bnpo"``; pass the step's total to get ``"dapo"`` across micro-batches.
- ``sequence-mean`` is TRL ``loss_type="grpo"``: mean over each sequence's tokens, then over
  sequences, so a short and a long response weigh the same.

Under DDP, which averages gradients over ranks, pass ``num_items = global count / world size``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

LossType = Literal["token-mean", "sequence-mean"]
TRL_LOSS_TYPE: dict[LossType, str] = {"token-mean": "dapo", "sequence-mean": "grpo"}


@dataclass(frozen=True)
class GrpoStats:
    """Token-weighted means over completion tokens, as TRL logs them (``clip_ratio/*``, ``kl``)."""

    clip_low: float
    clip_high: float
    clip_region: float
    ratio_mean: float
    kl: float | None
    entropy: float | None
    num_tokens: int


def grpo_loss(
    logprobs: Tensor,
    old_logprobs: Tensor,
    ref_logprobs: Tensor | None,
    advantages: Tensor,
    completion_mask: Tensor,
    *,
    epsilon_low: float,
    epsilon_high: float,
    beta: float = 0.0,
    loss_type: LossType = "token-mean",
    num_items: float | Tensor | None = None,
    bias_correction_kl: bool = False,
    entropies: Tensor | None = None,
) -> tuple[Tensor, GrpoStats]:
    """Loss to minimise, and its stats. Log-prob tensors and the mask are [B, T].

    ``advantages`` is [B] (one per sequence) or [B, T]. ``num_items``: the number of tokens
    (token-mean) or sequences (sequence-mean) the optimiser step averages over; default this
    batch's. The KL estimate is reported whenever ``ref_logprobs`` is given; it enters the loss
    only when ``beta`` > 0. ``bias_correction_kl`` multiplies the k3 term by the ratio
    (DeepSeek-V3.2: the KL gradient is then the unbiased reverse-KL gradient off-policy).
    Masked positions may hold any value: they get no loss and no gradient.
    """
    _check(logprobs, old_logprobs, ref_logprobs, completion_mask, beta)
    mask = completion_mask.bool()
    adv = advantages.unsqueeze(1) if advantages.dim() == 1 else advantages
    ratio = torch.exp(torch.where(mask, logprobs - old_logprobs, 0.0))
    clipped = torch.clamp(ratio, 1 - epsilon_low, 1 + epsilon_high)
    per_token = -torch.min(ratio * adv, clipped * adv)
    kl = None if ref_logprobs is None else _k3(torch.where(mask, ref_logprobs - logprobs, 0.0))
    if kl is not None and bias_correction_kl:
        kl = kl * ratio
    if kl is not None and beta != 0.0:
        per_token = per_token + beta * kl
    loss = _aggregate(torch.where(mask, per_token, 0.0), mask, loss_type, num_items)
    with torch.no_grad():
        stats = _stats(ratio, adv, mask, epsilon_low, epsilon_high, kl, entropies)
    return loss, stats


def _check(
    logprobs: Tensor,
    old_logprobs: Tensor,
    ref_logprobs: Tensor | None,
    completion_mask: Tensor,
    beta: float,
) -> None:
    shapes = [old_logprobs.shape, completion_mask.shape]
    if ref_logprobs is not None:
        shapes.append(ref_logprobs.shape)
    if logprobs.dim() != 2 or any(shape != logprobs.shape for shape in shapes):
        raise ValueError("logprobs, old_logprobs, ref_logprobs and completion_mask must be [B, T]")
    if beta != 0.0 and ref_logprobs is None:
        raise ValueError("beta > 0 needs ref_logprobs")


def _k3(ref_minus_logp: Tensor) -> Tensor:
    """Schulman's k3 estimator of KL(π‖π_ref): exp(d) - d - 1 with d = log π_ref - log π."""
    return torch.exp(ref_minus_logp) - ref_minus_logp - 1


def _aggregate(
    per_token: Tensor, mask: Tensor, loss_type: LossType, num_items: float | Tensor | None
) -> Tensor:
    maskf = mask.to(per_token.dtype)
    if loss_type == "token-mean":
        total = per_token.sum()
        return total / (maskf.sum().clamp(min=1.0) if num_items is None else num_items)
    if loss_type == "sequence-mean":
        total = (per_token.sum(dim=-1) / maskf.sum(dim=-1).clamp(min=1.0)).sum()
        return total / (per_token.size(0) if num_items is None else num_items)
    raise ValueError(f"unknown loss_type {loss_type!r}")


def _stats(
    ratio: Tensor,
    adv: Tensor,
    mask: Tensor,
    epsilon_low: float,
    epsilon_high: float,
    kl: Tensor | None,
    entropies: Tensor | None,
) -> GrpoStats:
    low = (ratio < 1 - epsilon_low) & (adv < 0)
    high = (ratio > 1 + epsilon_high) & (adv > 0)
    return GrpoStats(
        clip_low=masked_mean(low, mask),
        clip_high=masked_mean(high, mask),
        clip_region=masked_mean(low | high, mask),
        ratio_mean=masked_mean(ratio, mask),
        kl=None if kl is None else masked_mean(kl, mask),
        entropy=None if entropies is None else masked_mean(entropies, mask),
        num_tokens=int(mask.sum().item()),
    )


def masked_mean(values: Tensor, mask: Tensor) -> float:
    """Mean of ``values`` over positions where ``mask`` is set (0.0 when none is)."""
    selected = torch.where(mask.bool(), values.float(), 0.0)
    return float(selected.sum() / mask.sum().clamp(min=1))
