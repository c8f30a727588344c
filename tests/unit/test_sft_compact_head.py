"""compact_lm_head: TRL's fused LM head scores only the labelled positions on CPU too, with the
same loss and gradients as its every-position CPU path."""

from __future__ import annotations

import pytest
import torch
import trl.trainer.utils as trl_utils
from trl.trainer.utils import add_fused_lm_head

from judgelab.engines.tiny import tiny_model, tiny_tokenizer
from judgelab.units.judge_sft import compact_lm_head


def _loss_and_grads() -> tuple[torch.Tensor, list[torch.Tensor]]:
    model = tiny_model(len(tiny_tokenizer()), seed=0)
    add_fused_lm_head(model)
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(3, 60, (3, 24), generator=generator)
    labels = torch.full_like(input_ids, -100)
    labels[:, -3:] = input_ids[:, -3:]  # a judge's target: the last few tokens
    labels[1, -3] = -100
    out = model(input_ids=input_ids, labels=labels, fused_lm_head=True)
    out.loss.backward()
    grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    return out.loss.detach(), grads


def _count_rows(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    rows: list[int] = []
    apply = trl_utils._ChunkedLogProbFunction.apply

    def spy(hidden: torch.Tensor, *args: object) -> object:
        rows.append(hidden.shape[0])
        return apply(hidden, *args)

    monkeypatch.setattr(trl_utils._ChunkedLogProbFunction, "apply", spy)
    return rows


def test_compact_head_scores_only_labelled_positions_with_the_same_loss(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rows = _count_rows(monkeypatch)
    full_loss, full_grads = _loss_and_grads()
    with compact_lm_head():
        compact_loss, compact_grads = _loss_and_grads()
    assert rows == [3 * 23, 8], "every shifted position without the block, the 8 labels in it"
    assert torch.allclose(compact_loss, full_loss, atol=1e-6, rtol=1e-5)
    assert len(compact_grads) == len(full_grads) > 0
    for a, b in zip(compact_grads, full_grads, strict=True):
        assert torch.allclose(a, b, atol=1e-6, rtol=1e-4)


def test_the_patch_is_undone_after_the_block() -> None:
    original = trl_utils._use_triton
    with compact_lm_head():
        assert trl_utils._use_triton(torch.device("cpu"))
    assert trl_utils._use_triton is original and not original(torch.device("cpu"))
