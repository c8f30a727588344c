"""GRPO objective: advantages, clipped loss, log-probs; equal to TRL's own code on fixed batches.

The TRL comparisons build a real ``trl.GRPOTrainer`` around the tiny model (saved to a temporary
directory, so nothing is downloaded) and call its own ``_compute_loss``,
``_get_per_token_logps_and_entropies`` and ``_generate_and_score_completions``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor

from judgelab.engines.tiny import tiny_model, tiny_tokenizer
from judgelab.learner.advantages import group_advantages
from judgelab.learner.grpo import TRL_LOSS_TYPE, GrpoStats, LossType, grpo_loss
from judgelab.learner.logprobs import completion_logits, token_entropy, token_logprobs

TEMPERATURE = 0.7
EPS_LOW, EPS_HIGH = 0.2, 0.28
G = 4


def _loss(
    logprobs: Tensor,
    mask: Tensor,
    advantages: Tensor,
    *,
    old: Tensor | None = None,
    ref: Tensor | None = None,
    beta: float = 0.0,
    loss_type: LossType = "token-mean",
    num_items: float | None = None,
) -> tuple[Tensor, GrpoStats]:
    return grpo_loss(
        logprobs,
        logprobs.detach() if old is None else old,
        ref,
        advantages,
        mask,
        epsilon_low=EPS_LOW,
        epsilon_high=EPS_HIGH,
        beta=beta,
        loss_type=loss_type,
        num_items=num_items,
    )


def _lengths_mask(lengths: list[int], width: int) -> Tensor:
    return (torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]).long()


# --- advantages ---------------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [True, False])
def test_constant_reward_group_has_zero_advantage(scale: bool) -> None:
    rewards = torch.tensor([5.0, 5.0, 5.0, 5.0, 1.0, 0.0, 3.0, 2.0])
    advantages = group_advantages(rewards, G, scale_rewards=scale)
    assert not torch.isnan(advantages).any()
    assert torch.equal(advantages[:G], torch.zeros(G))
    assert advantages[G:].abs().sum() > 0


def test_scaling_divides_by_unbiased_group_std_plus_eps() -> None:
    rewards = torch.tensor([[1.0, 0.0, 3.0, 2.0], [10.0, 10.0, 10.0, 14.0]])
    unscaled = group_advantages(rewards, G, scale_rewards=False)
    scaled = group_advantages(rewards, G, scale_rewards=True)
    assert unscaled.shape == rewards.shape
    torch.testing.assert_close(unscaled[0], torch.tensor([-0.5, -1.5, 1.5, 0.5]))
    torch.testing.assert_close(unscaled[1], torch.tensor([-1.0, -1.0, -1.0, 3.0]))
    std0, std1 = math.sqrt(5 / 3), 2.0
    torch.testing.assert_close(scaled[0], unscaled[0] / (std0 + 1e-4))
    torch.testing.assert_close(scaled[1], unscaled[1] / (std1 + 1e-4))


def test_nan_reward_is_left_out_of_its_group_and_gets_zero() -> None:
    rewards = torch.tensor([1.0, float("nan"), 3.0, 2.0])
    advantages = group_advantages(rewards, G, scale_rewards=False)
    torch.testing.assert_close(advantages, torch.tensor([-1.0, 0.0, 1.0, 0.0]))


def test_rewards_must_split_into_groups() -> None:
    with pytest.raises(ValueError, match="groups of 4"):
        group_advantages(torch.zeros(6), G)


# --- loss (pure) --------------------------------------------------------------------------------


def test_masked_tokens_get_no_loss_and_no_gradient() -> None:
    mask = _lengths_mask([3, 5], 6)
    values = torch.randn(2, 6, generator=torch.Generator().manual_seed(0)) - 2.0
    values[mask == 0] = float("inf")  # garbage in padding must not leak into loss or gradient
    logprobs = values.clone().requires_grad_(True)
    old = torch.where(mask.bool(), values - 0.1, float("nan"))
    ref = torch.where(mask.bool(), values + 0.3, float("-inf"))
    for loss_type in ("token-mean", "sequence-mean"):
        loss, _ = _loss(
            logprobs,
            mask,
            torch.tensor([1.0, -1.0]),
            old=old,
            ref=ref,
            beta=0.04,
            loss_type=loss_type,
        )
        (grad,) = torch.autograd.grad(loss, logprobs)
        assert torch.isfinite(loss)
        assert torch.equal(grad[mask == 0], torch.zeros(int((mask == 0).sum())))
        assert (grad[mask == 1] != 0).all()


def _per_sequence_grad(loss_type: LossType) -> Tensor:
    mask = _lengths_mask([2, 8], 8)
    logprobs = torch.full((2, 8), -1.0, requires_grad=True)
    loss, _ = _loss(logprobs, mask, torch.tensor([1.0, 1.0]), loss_type=loss_type)
    (grad,) = torch.autograd.grad(loss, logprobs)
    return grad.sum(dim=1)


def test_sequence_mean_weighs_short_and_long_sequences_equally() -> None:
    short, long = _per_sequence_grad("sequence-mean")
    torch.testing.assert_close(short, long)
    torch.testing.assert_close(short, torch.tensor(-0.5))


def test_token_mean_weighs_every_token_equally() -> None:
    short, long = _per_sequence_grad("token-mean")
    torch.testing.assert_close(short, torch.tensor(-0.2))
    torch.testing.assert_close(long, torch.tensor(-0.8))


def test_beta_zero_reports_kl_without_adding_it() -> None:
    mask = _lengths_mask([4, 2], 4)
    logprobs = torch.full((2, 4), -1.0)
    ref = logprobs + 0.5
    adv = torch.tensor([1.0, -1.0])
    plain, plain_stats = _loss(logprobs, mask, adv)
    reported, stats = _loss(logprobs, mask, adv, ref=ref, beta=0.0)
    penalised, _ = _loss(logprobs, mask, adv, ref=ref, beta=0.1)
    k3 = math.exp(0.5) - 0.5 - 1
    assert plain_stats.kl is None
    assert stats.kl == pytest.approx(k3)
    torch.testing.assert_close(reported, plain)
    torch.testing.assert_close(penalised, plain + 0.1 * k3)


def test_beta_without_reference_is_an_error() -> None:
    with pytest.raises(ValueError, match="ref_logprobs"):
        _loss(torch.zeros(1, 2), torch.ones(1, 2), torch.ones(1), beta=0.1)


@pytest.mark.parametrize("loss_type", ["token-mean", "sequence-mean"])
def test_micro_batches_sum_to_the_full_batch_loss(loss_type: LossType) -> None:
    gen = torch.Generator().manual_seed(1)
    mask = _lengths_mask([1, 5, 3, 6], 6)
    logprobs = -torch.rand(4, 6, generator=gen)
    old = logprobs + 0.3 * torch.randn(4, 6, generator=gen)
    adv = torch.tensor([1.0, -0.5, 0.25, -2.0])
    full, _ = _loss(logprobs, mask, adv, old=old, loss_type=loss_type)
    total = float(mask.sum()) if loss_type == "token-mean" else 4.0
    parts = [
        _loss(logprobs[s], mask[s], adv[s], old=old[s], loss_type=loss_type, num_items=total)[0]
        for s in (slice(0, 2), slice(2, 4))
    ]
    torch.testing.assert_close(parts[0] + parts[1], full)


# --- equal to TRL -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved_tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model and tokenizer on disk: TRL loads the reference model from this path."""
    path = tmp_path_factory.mktemp("tiny-policy")
    tokenizer = tiny_tokenizer()
    tiny_model(len(tokenizer), seed=0).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def _trl_trainer(path: Path, batch_size: int, **config: Any) -> Any:
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    args = GRPOConfig(
        output_dir=str(path / "trl-out"),
        num_generations=G,
        per_device_train_batch_size=batch_size,
        max_completion_length=6,
        temperature=TEMPERATURE,
        epsilon=EPS_LOW,
        epsilon_high=EPS_HIGH,
        report_to="none",
        use_cpu=True,
        save_strategy="no",
        bf16=False,  # TRL's default is bf16 autocast; judgelab's learner computes in float32 here
        **config,
    )
    trainer: Any = GRPOTrainer(
        model=str(path),
        reward_funcs=_zero_reward,
        args=args,
        train_dataset=Dataset.from_dict({"prompt": ["hi"] * batch_size}),
        processing_class=tiny_tokenizer(),
    )
    assert next(trainer.model.parameters()).dtype == torch.float32
    return trainer


def _zero_reward(completions: list[Any], **_: Any) -> list[float | None]:
    return [0.0] * len(completions)


def _fixed_batch() -> dict[str, Tensor]:
    """8 sequences: left-padded prompts, right-padded completions of lengths 1..6."""
    gen = torch.Generator().manual_seed(7)
    vocab = len(tiny_tokenizer())
    prompt_mask = torch.flip(_lengths_mask([3, 5, 2, 5, 4, 1, 5, 3], 5), dims=[1])
    completion_mask = _lengths_mask([6, 1, 4, 6, 2, 5, 3, 6], 6)
    return {
        "prompt_ids": torch.randint(3, vocab, (8, 5), generator=gen) * prompt_mask,
        "prompt_mask": prompt_mask,
        "completion_ids": torch.randint(3, vocab, (8, 6), generator=gen) * completion_mask,
        "completion_mask": completion_mask,
    }


def _ours(model: torch.nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
    """Our per-token log-probs (with grad) and entropies of the batch's completions."""
    input_ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1)
    attention_mask = torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1)
    logits = completion_logits(model, input_ids, attention_mask, 6, TEMPERATURE)
    mask = batch["completion_mask"]
    return token_logprobs(logits, batch["completion_ids"], mask), token_entropy(logits, mask)


@pytest.mark.slow
def test_logprobs_and_entropy_equal_trls(saved_tiny: Path) -> None:
    trainer = _trl_trainer(saved_tiny, 8)
    batch = _fixed_batch()
    input_ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1)
    attention_mask = torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1)
    with torch.no_grad():
        trl_logps, trl_entropy, _ = trainer._get_per_token_logps_and_entropies(
            trainer.model, input_ids, attention_mask, 6, compute_entropy=True
        )
        logps, entropy = _ours(tiny_model(len(tiny_tokenizer()), seed=0), batch)
    torch.testing.assert_close(logps, trl_logps, atol=1e-5, rtol=0)
    torch.testing.assert_close(entropy, trl_entropy, atol=1e-5, rtol=0)
    assert logps[batch["completion_mask"] == 1].lt(0).all()


@pytest.mark.slow
@pytest.mark.parametrize("scale", [True, False])
def test_advantages_equal_trls(saved_tiny: Path, scale: bool) -> None:
    rewards: list[float | None] = [1, 0, 3, 2, 5, 5, 5, 5, 2, None, 0, 7]
    trainer = _trl_trainer(saved_tiny, len(rewards), scale_rewards=scale)
    trainer.reward_funcs[0] = lambda completions, **_: list(rewards)
    trainer.model.train()
    prompts = [{"prompt": f"question {i // G}"} for i in range(len(rewards))]
    trl_advantages = trainer._generate_and_score_completions(prompts)["advantages"]
    as_tensor = torch.tensor([math.nan if r is None else float(r) for r in rewards])
    ours = group_advantages(as_tensor, G, scale_rewards=scale)
    torch.testing.assert_close(ours, trl_advantages, atol=1e-6, rtol=0)
    assert ours[4:8].abs().sum() == 0 and ours[9] == 0


# (our loss_type, TRL's loss_type, whether the normaliser is a count beyond this batch)
TRL_CASES = [
    ("token-mean", TRL_LOSS_TYPE["token-mean"], True),
    ("token-mean", "bnpo", False),
    ("sequence-mean", TRL_LOSS_TYPE["sequence-mean"], False),
]


@pytest.mark.slow
@pytest.mark.parametrize(("beta", "correction"), [(0.0, False), (0.04, False), (0.04, True)])
@pytest.mark.parametrize(("loss_type", "trl_loss_type", "window"), TRL_CASES)
def test_loss_gradient_and_stats_equal_trls(
    saved_tiny: Path,
    loss_type: LossType,
    trl_loss_type: str,
    window: bool,
    beta: float,
    correction: bool,
) -> None:
    trainer = _trl_trainer(
        saved_tiny, 8, loss_type=trl_loss_type, beta=beta, use_bias_correction_kl=correction
    )
    trainer.model.eval()  # eval: TRL's normaliser is then 1, not the accumulation step count
    batch = _fixed_batch()
    mask = batch["completion_mask"]
    ours_model = tiny_model(len(tiny_tokenizer()), seed=0)
    logps, entropy = _ours(ours_model, batch)

    gen = torch.Generator().manual_seed(3)
    old = (logps.detach() + 0.4 * torch.randn(logps.shape, generator=gen)) * mask
    ref = (logps.detach() + 0.3 * torch.randn(logps.shape, generator=gen)) * mask
    rewards = torch.tensor([1.0, 0.0, 3.0, 2.0, 0.5, 4.0, -1.0, 2.0])
    advantages = group_advantages(rewards, G, scale_rewards=True)
    num_items = float(mask.sum()) + 17.0 if window else None

    loss, stats = grpo_loss(
        logps,
        old,
        ref,
        advantages,
        mask,
        epsilon_low=EPS_LOW,
        epsilon_high=EPS_HIGH,
        beta=beta,
        loss_type=loss_type,
        num_items=num_items,
        bias_correction_kl=correction,
        entropies=entropy.detach(),
    )
    inputs = dict(batch, advantages=advantages, old_per_token_logps=old, ref_per_token_logps=ref)
    inputs["num_items_in_batch"] = torch.tensor(num_items if window else float(mask.sum()))
    trl_loss = trainer._compute_loss(trainer.model, inputs)

    assert stats.clip_low > 0 and stats.clip_high > 0
    torch.testing.assert_close(loss, trl_loss, atol=1e-5, rtol=0)
    _assert_same_gradients(loss, trl_loss, ours_model, trainer.model)
    _assert_same_stats(stats, trainer._metrics["eval"], beta)


def _assert_same_gradients(
    loss: Tensor, trl_loss: Tensor, ours: torch.nn.Module, theirs: torch.nn.Module
) -> None:
    loss.backward()
    trl_loss.backward()
    their_grads = {name: p.grad for name, p in theirs.named_parameters()}
    for name, param in ours.named_parameters():
        assert param.grad is not None and their_grads[name] is not None, name
        torch.testing.assert_close(param.grad, their_grads[name], atol=1e-5, rtol=1e-4)


def _assert_same_stats(stats: GrpoStats, metrics: dict[str, list[float]], beta: float) -> None:
    assert stats.clip_low == pytest.approx(metrics["clip_ratio/low_mean"][-1], abs=1e-6)
    assert stats.clip_high == pytest.approx(metrics["clip_ratio/high_mean"][-1], abs=1e-6)
    assert stats.clip_region == pytest.approx(metrics["clip_ratio/region_mean"][-1], abs=1e-6)
    assert stats.entropy == pytest.approx(metrics["entropy"][-1], abs=1e-5)
    if beta:
        assert stats.kl == pytest.approx(metrics["kl"][-1], abs=1e-6)
