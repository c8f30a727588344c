"""Leaner inference forwards for two hot modules of Llama-style models.

On CPU a prefill is compute-bound, and every elementwise pass over the hidden states is time the
matmuls do not get:

* RMSNorm: the library's forward is five tensor ops (pow, mean, add, rsqrt, two muls), each a
  full pass over the hidden states; ``torch.nn.functional.rms_norm`` is one fused kernel, equal to
  the bit in float32 (tests/unit/test_fused_ops.py; the built-in model's logits are unchanged).
* Gated MLP: ``silu(gate) * up`` computed in place, without two fresh hidden-size tensors.

The fast paths run only without autograd, without autocast and on float32; anything else (a
training step, a bfloat16 model) takes the library's forward. A module is switched only after
its fast path has matched the library's forward on a random input, so a look-alike with other
semantics (Gemma's ``1 + weight`` norm, another activation) keeps its own forward.
"""

from __future__ import annotations

from types import MethodType
from typing import Any

import torch
from torch import nn

#: Agreement a module's fast path must show with its library forward before it is used.
_CHECK_RTOL, _CHECK_ATOL = 1e-5, 1e-6
_MARK = "_judgelab_fused"


def fuse(model: nn.Module) -> int:
    """Switch ``model``'s RMSNorm and gated-MLP modules to the fast paths; how many were.
    A sharded model (FSDP) is left alone: a module's forward there is a collective."""
    if _sharded(model):
        return 0
    switched = 0
    for module in model.modules():
        if getattr(module, _MARK, False):
            continue
        if _is_rms_norm(module):
            switched += _switch(module, _rms_norm_forward, _rms_norm_probe(module))
        elif _is_gated_mlp(module):
            switched += _switch(module, _gated_mlp_forward, _mlp_probe(module))
    return switched


def _sharded(model: nn.Module) -> bool:
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # a torch build without distributed support shards nothing
        return False
    return any(isinstance(parameter, DTensor) for parameter in model.parameters())


def _switch(module: nn.Module, fast: Any, probe: torch.Tensor | None) -> bool:
    if probe is None or not _agrees(module, fast, probe):
        return False
    module.forward = MethodType(fast, module)
    setattr(module, _MARK, True)
    return True


def _agrees(module: nn.Module, fast: Any, probe: torch.Tensor) -> bool:
    with torch.inference_mode():
        expected = type(module).forward(module, probe)
        got = fast(module, probe.clone())
    return bool(torch.allclose(got, expected, rtol=_CHECK_RTOL, atol=_CHECK_ATOL))


def _fast_path(hidden: torch.Tensor, weight: torch.Tensor) -> bool:
    return (
        not torch.is_grad_enabled()
        and hidden.dtype == torch.float32
        and weight.dtype == torch.float32
        and not torch.is_autocast_enabled(hidden.device.type)
    )


# -- RMSNorm -------------------------------------------------------------------------------


def _is_rms_norm(module: nn.Module) -> bool:
    weight = getattr(module, "weight", None)
    return (
        type(module).__name__.endswith("RMSNorm")
        and isinstance(weight, torch.Tensor)
        and weight.dim() == 1
        and isinstance(getattr(module, "variance_epsilon", None), float)
    )


def _rms_norm_probe(module: Any) -> torch.Tensor | None:
    weight = module.weight
    assert isinstance(weight, torch.Tensor)
    if weight.dtype != torch.float32:
        return None
    generator = torch.Generator().manual_seed(0)
    return 3 * torch.randn(2, 3, weight.shape[0], generator=generator).to(weight.device)


def _rms_norm_forward(self: Any, hidden: torch.Tensor) -> torch.Tensor:
    weight = self.weight
    assert isinstance(weight, torch.Tensor)
    if not _fast_path(hidden, weight):
        return type(self).forward(self, hidden)
    eps = self.variance_epsilon
    assert isinstance(eps, float)
    return torch.nn.functional.rms_norm(hidden, weight.shape, weight, eps)


# -- gated MLP -----------------------------------------------------------------------------


def _is_gated_mlp(module: nn.Module) -> bool:
    return all(
        isinstance(getattr(module, name, None), nn.Module)
        for name in ("gate_proj", "up_proj", "down_proj", "act_fn")
    ) and type(module.act_fn).__name__ in {"SiLU", "SiLUActivation"}


def _mlp_probe(module: Any) -> torch.Tensor | None:
    weight = getattr(module.gate_proj, "weight", None)
    if not isinstance(weight, torch.Tensor) or weight.dtype != torch.float32:
        return None
    generator = torch.Generator().manual_seed(0)
    return torch.randn(2, 3, weight.shape[1], generator=generator).to(weight.device)


def _gated_mlp_forward(self: Any, hidden: torch.Tensor) -> torch.Tensor:
    weight = getattr(self.gate_proj, "weight", None)
    if not isinstance(weight, torch.Tensor) or not _fast_path(hidden, weight):
        return type(self).forward(self, hidden)
    gate = self.gate_proj(hidden)
    torch.nn.functional.silu(gate, inplace=True)
    gate.mul_(self.up_proj(hidden))
    return self.down_proj(gate)


def unfuse(model: nn.Module) -> int:
    """Put the library's forwards back (a baseline that must be plain ``transformers``)."""
    restored = 0
    for module in model.modules():
        if vars(module).pop(_MARK, False):
            vars(module).pop("forward", None)
            restored += 1
    return restored
