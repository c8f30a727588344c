"""A saved plain-LoRA adapter merged into a copy of the base weights, without peft.

peft's ``PeftModel.from_pretrained`` + ``merge_and_unload`` first wraps every target module in
LoRA layers (about 0.3-0.5 s for the built-in model on a 2-core CPU), on the rollout
generator's critical path at every policy version. For a plain LoRA adapter the merge is
``W += scale * B @ A`` per target module (``scale`` = alpha / r, or alpha / sqrt(r) with
rsLoRA), which this does directly. Any other adapter (DoRA, per-module ranks or alphas,
biases, modules to save, embeddings, ...) returns None: the caller goes through peft.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
_PREFIX = "base_model.model."
_SUFFIXES = (".lora_A.weight", ".lora_B.weight")
#: Adapter settings under which the merge is exactly ``W += scale * B @ A``.
_PLAIN = {
    "peft_type": "LORA",
    "use_dora": False,
    "bias": "none",
    "fan_in_fan_out": False,
    "lora_bias": False,
}
_UNSET = ("modules_to_save", "layer_replication", "target_parameters", "trainable_token_indices")
_EMPTY = ("alpha_pattern", "rank_pattern")


def merged_copy(base: nn.Module, adapter_dir: Path) -> nn.Module | None:
    """A copy of ``base`` with the adapter in ``adapter_dir`` merged, or None when the adapter
    is not plain LoRA over linear layers (use peft then). ``base`` is left untouched."""
    config = json.loads((adapter_dir / CONFIG_FILE).read_text(encoding="utf-8"))
    weights_file = adapter_dir / WEIGHTS_FILE
    if not _is_plain(config) or not weights_file.is_file():
        return None
    from safetensors.torch import load_file

    pairs = _factor_pairs(load_file(str(weights_file)))
    if pairs is None:
        return None
    model = copy.deepcopy(base)
    modules = dict(model.named_modules())
    targets = {name: modules.get(name) for name in pairs}
    if not all(isinstance(module, nn.Linear) for module in targets.values()):
        return None
    scale = _scale(config)
    with torch.no_grad():
        for name, (lora_a, lora_b) in pairs.items():
            weight = targets[name].weight  # type: ignore[union-attr]
            delta = lora_b.to(torch.float32) @ lora_a.to(torch.float32)
            weight += (delta * scale).to(weight.dtype)
    return model.eval()


def _is_plain(config: dict[str, Any]) -> bool:
    return (
        all(config.get(key, value) == value for key, value in _PLAIN.items())
        and all(config.get(key) is None for key in _UNSET)
        and all(not config.get(key) for key in _EMPTY)
        and isinstance(config.get("r"), int)
        and config["r"] > 0
        and isinstance(config.get("lora_alpha"), int | float)
    )


def _scale(config: dict[str, Any]) -> float:
    rank, alpha = config["r"], float(config["lora_alpha"])
    return alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank


def _factor_pairs(
    tensors: dict[str, torch.Tensor],
) -> dict[str, tuple[torch.Tensor, torch.Tensor]] | None:
    """Module name -> (A, B); None when a key is not a LoRA factor of a module."""
    factors: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in tensors.items():
        suffix = next((s for s in _SUFFIXES if key.endswith(s)), None)
        if suffix is None or not key.startswith(_PREFIX):
            return None
        module = key[len(_PREFIX) : -len(suffix)]
        factors.setdefault(module, {})[suffix] = tensor
    if any(len(pair) != 2 for pair in factors.values()):
        return None
    return {name: (pair[_SUFFIXES[0]], pair[_SUFFIXES[1]]) for name, pair in factors.items()}
