"""Engines on trained models (``engines/adapters``)."""

from __future__ import annotations

import copy
import types
from typing import Any

import torch

from judgelab.engines.adapters import merged_engine


def test_a_trainer_patched_forward_does_not_run_the_original_model(tiny_engine) -> None:
    trained = copy.deepcopy(tiny_engine.model)
    bound = trained.forward

    def patched(self: Any, *args: Any, **kwargs: Any) -> Any:  # what TRL's trainers install
        return bound(*args, **kwargs)

    trained.forward = types.MethodType(patched, trained)
    copied = copy.deepcopy(trained)
    with torch.no_grad():
        for parameter in copied.parameters():
            parameter.mul_(1.5)
    engine = merged_engine(copied, tiny_engine)
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.inference_mode():
        got = engine.model(input_ids=ids).logits
        assert torch.equal(got, type(copied).forward(copied, input_ids=ids).logits)
        assert not torch.allclose(got, trained(input_ids=ids).logits)
