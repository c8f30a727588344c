"""The trained policy: a causal LM with LoRA adapters (peft), and its frozen starting point.

With LoRA the reference π_init is the same model with its adapters disabled (no second copy);
with full fine-tuning it is a frozen deep copy made before training.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from judgelab.engines.adapters import with_lora
from judgelab.learner.batch import Batch
from judgelab.learner.settings import LoraSettings


def wrap_policy(model: nn.Module, lora: LoraSettings) -> nn.Module:
    """``model`` with LoRA adapters (only they train), or ``model`` itself for full training.

    A model that already has adapters (a judge after its SFT stage) keeps them and trains them on.
    """
    if not lora.enabled:
        for param in model.parameters():
            param.requires_grad_(True)
        return model
    if is_adapted(model):
        for name, param in model.named_parameters():
            param.requires_grad_("lora_" in name)
        return model
    wrapped: nn.Module = with_lora(model, lora)
    return wrapped


def is_adapted(model: nn.Module) -> bool:
    """Whether ``model`` is a peft model (carries adapters already)."""
    return hasattr(model, "peft_config")


class Reference:
    """Log-probs under π_init: adapters disabled, or a frozen copy for full fine-tuning."""

    def __init__(self, policy: nn.Module, lora: bool) -> None:
        self._policy = policy
        self._copy: nn.Module | None = None
        if not lora:
            self._copy = copy.deepcopy(policy).eval()
            for param in self._copy.parameters():
                param.requires_grad_(False)

    @property
    def frozen_copy(self) -> nn.Module | None:
        """The frozen copy of full fine-tuning (None with LoRA)."""
        return self._copy

    @contextmanager
    def model(self) -> Iterator[nn.Module]:
        if self._copy is not None:
            yield self._copy
            return
        with self._policy.disable_adapter():  # type: ignore[operator]
            yield self._policy


def forward_logits(model: Any, batch: Batch, temperature: float) -> Tensor:
    """Float32 logits / temperature predicting each completion position: [B, C, V]."""
    width = batch.completion_width
    output = model(
        input_ids=batch.input_ids,
        attention_mask=batch.attention_mask,
        position_ids=batch.position_ids,
        logits_to_keep=width + 1,
        use_cache=False,
    )
    logits: Tensor = output.logits[:, :-1, :]
    return logits.float() / temperature


def trainable(model: nn.Module) -> dict[str, nn.Parameter]:
    """The parameters the optimiser updates, by name (stable order)."""
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def snapshot(params: dict[str, nn.Parameter]) -> dict[str, Tensor]:
    return {name: p.detach().clone() for name, p in params.items()}


@contextmanager
def swapped_weights(params: dict[str, nn.Parameter], weights: dict[str, Tensor]) -> Iterator[None]:
    """Temporarily give ``params`` the values ``weights`` (e.g. an older policy version)."""
    saved = snapshot(params)
    try:
        with torch.no_grad():
            for name, param in params.items():
                param.copy_(weights[name])
        yield
    finally:
        with torch.no_grad():
            for name, param in params.items():
                param.copy_(saved[name])
