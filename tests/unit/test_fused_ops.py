"""Fused inference forwards for RMSNorm and the gated MLP (``engines/fused_ops``)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from judgelab.engines import fused_ops
from judgelab.engines.tiny import tiny_model, tiny_tokenizer

LAYERS = 2
NORMS = 2 * LAYERS + 1  # two per layer and the final one
MLPS = LAYERS


@pytest.fixture
def model() -> nn.Module:
    model = tiny_model(len(tiny_tokenizer()), seed=3)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():  # norms start at ones: give them weights that matter
        for module in model.modules():
            weight = getattr(module, "weight", None)
            if type(module).__name__.endswith("RMSNorm") and isinstance(weight, torch.Tensor):
                weight.copy_(torch.rand(weight.shape, generator=generator) + 0.5)
    return model


def padded_batch() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(2)
    input_ids = torch.randint(3, 200, (3, 17), generator=generator)
    mask = torch.ones_like(input_ids)
    mask[1, :5] = 0
    mask[2, :11] = 0
    return {"input_ids": input_ids, "attention_mask": mask}


def logits(model: nn.Module, grad: bool = False) -> torch.Tensor:
    with torch.set_grad_enabled(grad):
        out: torch.Tensor = model(**padded_batch()).logits
    return out


def count_rms_norm_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls = [0]
    real = torch.nn.functional.rms_norm

    def counting(*args: object, **kwargs: object) -> torch.Tensor:
        calls[0] += 1
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(torch.nn.functional, "rms_norm", counting)
    return calls


def test_every_norm_and_mlp_is_switched_once_and_can_be_put_back(
    model: nn.Module, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert fused_ops.fuse(model) == NORMS + MLPS
    assert fused_ops.fuse(model) == 0
    assert fused_ops.unfuse(model) == NORMS + MLPS
    calls = count_rms_norm_calls(monkeypatch)
    logits(model)
    assert calls[0] == 0


def test_fused_logits_equal_the_library_logits_bit_for_bit(model: nn.Module) -> None:
    library = copy.deepcopy(model)
    fused_ops.fuse(model)
    with torch.inference_mode():
        assert torch.equal(model(**padded_batch()).logits, library(**padded_batch()).logits)
    assert torch.equal(logits(model), logits(library))


def test_the_fast_path_runs_at_inference(model: nn.Module, monkeypatch: pytest.MonkeyPatch) -> None:
    fused_ops.fuse(model)
    calls = count_rms_norm_calls(monkeypatch)
    logits(model)
    assert calls[0] == NORMS


def test_training_and_autocast_take_the_library_forward(
    model: nn.Module, monkeypatch: pytest.MonkeyPatch
) -> None:
    library = copy.deepcopy(model)
    fused_ops.fuse(model)
    calls = count_rms_norm_calls(monkeypatch)
    logits(model, grad=True).sum().backward()
    logits(library, grad=True).sum().backward()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits(model)
    assert calls[0] == 0
    for (name, fused), plain in zip(model.named_parameters(), library.parameters(), strict=True):
        assert fused.grad is not None and plain.grad is not None
        assert torch.equal(fused.grad, plain.grad), name


class GemmaStyleRMSNorm(nn.Module):
    """Looks like an RMSNorm (weight, variance_epsilon) but scales by 1 + weight."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.full((size,), 0.25))
        self.variance_epsilon = 1e-6

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        variance = hidden.pow(2).mean(-1, keepdim=True)
        return hidden * torch.rsqrt(variance + self.variance_epsilon) * (1 + self.weight)


class GeluMLP(nn.Module):
    def __init__(self, size: int) -> None:
        super().__init__()
        self.gate_proj, self.up_proj = nn.Linear(size, 8), nn.Linear(size, 8)
        self.down_proj = nn.Linear(8, size)
        self.act_fn = nn.SiLU()

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        # A SiLU module it does not use the way a gated MLP does.
        return self.down_proj(nn.functional.gelu(self.gate_proj(hidden)) + self.up_proj(hidden))


def test_look_alikes_with_other_semantics_keep_their_forward() -> None:
    modules = nn.ModuleList([GemmaStyleRMSNorm(16), GeluMLP(16)])
    assert fused_ops.fuse(modules) == 0
    assert all("forward" not in vars(module) for module in modules)


def test_a_bfloat16_model_is_left_alone(model: nn.Module) -> None:
    assert fused_ops.fuse(model.to(torch.bfloat16)) == 0
