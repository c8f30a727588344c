"""Per-token log-probabilities and entropies of completion tokens, as TRL computes them.

TRL 1.16 (``GRPOTrainer._get_per_token_logps_and_entropies`` through
``trl.trainer.utils.add_fused_lm_head``) scores token t of the completion with the logits at
position t - 1 divided by the *sampling temperature* before the softmax, so the ratio compares
the same distribution the rollout was drawn from. Completion positions whose attention mask is 0
get log-prob 0 and entropy 0. TRL never materialises the full logits (a chunked kernel); these
helpers do, which is exact but costs batch x length x vocab floats.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor


class _CausalLMOutput(Protocol):
    logits: Tensor


class CausalLM(Protocol):
    """What is needed of a transformers causal LM (plain or peft-wrapped)."""

    def __call__(
        self, *, input_ids: Tensor, attention_mask: Tensor, logits_to_keep: int, use_cache: bool
    ) -> _CausalLMOutput: ...


def completion_logits(
    model: CausalLM,
    input_ids: Tensor,
    attention_mask: Tensor,
    logits_to_keep: int,
    temperature: float = 1.0,
) -> Tensor:
    """Float32 logits / temperature predicting the last ``logits_to_keep`` tokens: [B, K, V].

    ``input_ids`` is prompt + completion (left-padded prompts, right-padded completions), the
    completion being its last ``logits_to_keep`` columns.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    output = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        logits_to_keep=logits_to_keep + 1,
        use_cache=False,
    )
    return output.logits[:, :-1, :].float() / temperature


def token_logprobs(logits: Tensor, token_ids: Tensor, mask: Tensor) -> Tensor:
    """log softmax(logits)[token] per position, 0 where ``mask`` is 0: [B, K]."""
    picked = logits.gather(-1, token_ids.unsqueeze(-1)).squeeze(-1)
    return torch.where(mask.bool(), picked - torch.logsumexp(logits, dim=-1), 0.0)


def token_entropy(logits: Tensor, mask: Tensor) -> Tensor:
    """Entropy of softmax(logits) per position, 0 where ``mask`` is 0: [B, K]."""
    log_p = torch.log_softmax(logits, dim=-1)
    entropy = -(log_p.exp() * log_p).sum(dim=-1)
    return torch.where(mask.bool(), entropy, 0.0)


def sequence_logprobs(
    model: CausalLM,
    input_ids: Tensor,
    attention_mask: Tensor,
    logits_to_keep: int,
    temperature: float = 1.0,
) -> Tensor:
    """Log-probs of the last ``logits_to_keep`` tokens of ``input_ids`` under ``model``: [B, K]."""
    logits = completion_logits(model, input_ids, attention_mask, logits_to_keep, temperature)
    completion = input_ids[:, -logits_to_keep:]
    return token_logprobs(logits, completion, attention_mask[:, -logits_to_keep:])
