"""FSDP2 (``fully_shard``) for the learner: which modules become units, and tensors moved
between their sharded form (a DTensor, one slice per rank) and their full form.

Every decoder layer is one FSDP unit and the root (embeddings, final norm, LM head; with LoRA
the peft wrapper) another. FSDP2 shards each parameter on dim 0 over the ranks, trainable or
frozen alike, so a LoRA layer's mixed ``requires_grad`` needs nothing special. Its gradient
reduce-scatter averages over the ranks, as DDP's all-reduce does. Gathering (:func:`full`) is
a collective: every rank calls it, in the same order.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.distributed.fsdp import FSDPModule, fully_shard
from torch.distributed.tensor import DTensor, distribute_tensor

LAYER_SUFFIX = "DecoderLayer"


def decoder_layers(model: nn.Module) -> list[nn.Module]:
    """The outermost modules whose class name ends in ``DecoderLayer`` (transformers' naming for
    a transformer block: ``LlamaDecoderLayer``, ``Qwen2DecoderLayer``...), in model order."""
    found: list[tuple[str, nn.Module]] = []
    for name, module in model.named_modules():
        inside = any(name.startswith(f"{outer}.") for outer, _ in found)
        if type(module).__name__.endswith(LAYER_SUFFIX) and not inside:
            found.append((name, module))
    return [module for _, module in found]


def shard(model: nn.Module) -> nn.Module:
    """Shard ``model`` in place over the default process group: each decoder layer, then the
    root (its parameters become DTensors: make the optimiser afterwards). ``model`` is a
    transformers model; for a peft one pass :func:`inner_model`, whose forward both the adapted
    and the adapter-free (``get_base_model``) paths run through."""
    for layer in decoder_layers(model):
        fully_shard(layer)
    fully_shard(model)
    _gather_once(model)
    return model


def _gather_once(model: nn.Module) -> None:
    """Gather each unit once, one at a time, outside inference mode. FSDP keeps the buffers of
    its first gather; made under ``torch.inference_mode`` (a generation before any training
    step) they refuse the next gather's in-place copy outside it."""
    with torch.no_grad():
        for module in model.modules():  # the root first: its lazy init covers the whole tree
            if isinstance(module, FSDPModule):
                module.unshard()
                module.reshard()


def inner_model(model: nn.Module) -> nn.Module:
    """The transformers model inside a peft wrapper (``model`` itself without one)."""
    get_base_model = getattr(model, "get_base_model", None)
    inner: nn.Module = get_base_model() if callable(get_base_model) else model
    return inner


def set_gradient_sync(model: nn.Module, sync: bool) -> None:
    """Reduce-scatter gradients in the coming backward (False: accumulate them locally)."""
    for module in model.modules():
        if isinstance(module, FSDPModule):
            module.set_requires_gradient_sync(sync, recurse=False)


def reshard(model: nn.Module) -> None:
    """Drop the whole copies FSDP keeps after a forward (the root unit keeps its own for the
    backward): the next forward gathers again. Needed before and after writing parameters in
    place (an older version swapped in, a checkpoint loaded), which changes only the shards."""
    for module in model.modules():
        if isinstance(module, FSDPModule):
            module.reshard()


def full(tensor: Tensor) -> Tensor:
    """The whole tensor on every rank, on the CPU for a sharded one (collective); ``tensor``
    itself when it is not sharded."""
    if isinstance(tensor, DTensor):
        return tensor.full_tensor().cpu()
    return tensor


def full_tree(value: Any) -> Any:
    """``value`` (dicts, lists, tuples of tensors and plain values, such as an optimiser's
    state dict) with every sharded tensor gathered whole."""
    if isinstance(value, Tensor):
        return full(value)
    if isinstance(value, dict):
        return {key: full_tree(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(full_tree(item) for item in value)
    return value


def like(value: Tensor, param: Tensor) -> Tensor:
    """The full ``value`` laid out as ``param`` is: this rank's slice when ``param`` is sharded
    (cut locally, no communication: every rank holds ``value``), else ``value`` itself."""
    if not isinstance(param, DTensor):
        return value
    local = value.detach().to(device=param.device, dtype=param.dtype)
    return distribute_tensor(local, param.device_mesh, param.placements, src_data_rank=None)


def shard_optimizer_state(optimizer: torch.optim.Optimizer) -> None:
    """After ``load_state_dict`` of a full (gathered) state: each per-parameter tensor of a
    sharded parameter (Adam's moments) cut to this rank's slice; scalars such as ``step``
    stay as they are."""
    for param, state in optimizer.state.items():
        if not isinstance(param, DTensor):
            continue
        for key, value in state.items():
            if isinstance(value, Tensor) and not isinstance(value, DTensor):
                if value.shape == param.shape:
                    state[key] = like(value, param)
