"""GrpoTrainer on the tiny model: a step moves the policy, accumulation and resume are exact."""

from __future__ import annotations

import dataclasses
import math
import random
from pathlib import Path

import pytest
import torch

from judgelab.engines.tiny import tiny_model, tiny_tokenizer
from judgelab.learner.batch import TrainGroup, collate, prompt_token_ids, widths
from judgelab.learner.logprobs import token_logprobs
from judgelab.learner.policy_model import forward_logits
from judgelab.learner.settings import LoraSettings, TrainerSettings
from judgelab.learner.trainer import GrpoTrainer

G = 4
VOCAB = len(tiny_tokenizer())
PAD = tiny_tokenizer().pad_token_id


def settings(**changes: object) -> TrainerSettings:
    base = TrainerSettings(
        group_size=G,
        learning_rate=1e-2,
        epsilon_low=0.2,
        epsilon_high=0.28,
        max_staleness=1,
        temperature=0.7,
        seed=0,
        lora=LoraSettings(r=4, alpha=8, dropout=0.0, target_modules=("q_proj", "v_proj")),
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def trainer(**changes: object) -> GrpoTrainer:
    return GrpoTrainer(tiny_model(VOCAB, seed=0), PAD, settings(**changes))


def groups(n: int, seed: int, version: int = 0) -> list[TrainGroup]:
    rng = random.Random(seed)
    out = []
    for g in range(n):
        prompt = prompt_token_ids(tiny_tokenizer(), f"question {seed}-{g}")
        completions = tuple(
            tuple(rng.randrange(3, VOCAB) for _ in range(rng.randint(1, 6))) for _ in range(G)
        )
        rewards = tuple(float(rng.randint(0, 9)) for _ in range(G))
        out.append(TrainGroup(f"g-{seed}-{g}", version, tuple(prompt), completions, rewards))
    return out


def sequence_logprob(t: GrpoTrainer, group: TrainGroup) -> torch.Tensor:
    batch = collate([group], PAD, widths([group]))
    with torch.no_grad():
        logits = forward_logits(t.policy, batch, t.settings.temperature)
    ids = batch.input_ids[:, -batch.completion_width :]
    return token_logprobs(logits, ids, batch.completion_mask).sum(-1)


def test_a_step_raises_logprobs_of_positive_advantage_completions() -> None:
    t = trainer()
    batch = groups(2, seed=1)
    before = [sequence_logprob(t, g) for g in batch]
    log = t.step(batch)
    after = [sequence_logprob(t, g) for g in batch]
    assert log.step == 1 and t.version == 1 and log.groups == 2 and log.completions == 8
    assert math.isfinite(log.loss) and log.grad_norm > 0
    for group, b, a in zip(batch, before, after, strict=True):
        rewards = torch.tensor(group.rewards)
        best, worst = int(rewards.argmax()), int(rewards.argmin())
        assert a[best] > b[best], "the best completion must become more likely"
        assert a[worst] < b[worst], "the worst completion must become less likely"


def test_repeated_steps_reduce_the_loss_on_a_fixed_batch() -> None:
    # Groups stay stamped with version 0, so each step's loss is the clipped surrogate against
    # the starting policy: it must fall as the policy moves towards the high rewards.
    t = trainer(max_staleness=3)
    batch = groups(2, seed=2)
    losses = [t.step(batch).loss for _ in range(3)]
    assert losses[2] < losses[1] < losses[0]


def test_kl_is_zero_at_start_and_positive_after_training() -> None:
    t = trainer()
    batch = groups(2, seed=3)
    assert t.step(batch).kl == pytest.approx(0.0, abs=1e-9)
    log = t.step([dataclasses.replace(g, policy_version=1) for g in groups(2, seed=4)])
    assert log.kl > 0 and log.entropy > 0 and log.staleness_max == 0


def test_stale_groups_use_the_old_versions_logprobs() -> None:
    t = trainer()
    t.step(groups(2, seed=5))
    log = t.step(groups(2, seed=6, version=0))  # one version behind
    assert log.staleness_mean == 1 and log.ratio_mean != pytest.approx(1.0, abs=1e-7)
    with pytest.raises(ValueError, match="versions old"):
        t.step(groups(2, seed=7, version=0))  # now two behind, bound 1
    with pytest.raises(ValueError, match="ahead"):
        t.step(groups(2, seed=7, version=9))


def _grads_after_one_step(
    accumulation: int, loss_type: str
) -> tuple[float, dict[str, torch.Tensor]]:
    t = trainer(gradient_accumulation_steps=accumulation, loss_type=loss_type, max_grad_norm=1e9)
    batch = groups(4, seed=8)
    log = t.step(batch)
    return log.loss, {n: p.detach().clone() for n, p in t.params.items()}


@pytest.mark.parametrize("loss_type", ["token-mean", "sequence-mean"])
def test_gradient_accumulation_equals_one_big_batch(loss_type: str) -> None:
    loss_one, weights_one = _grads_after_one_step(1, loss_type)
    loss_four, weights_four = _grads_after_one_step(4, loss_type)
    assert loss_four == pytest.approx(loss_one, abs=1e-6)
    for name, value in weights_one.items():
        torch.testing.assert_close(weights_four[name], value, atol=1e-6, rtol=0)


def test_bad_input_is_refused() -> None:
    t = trainer(gradient_accumulation_steps=2)
    ok = groups(2, seed=9)
    with pytest.raises(ValueError, match="at least one group"):
        t.step([])
    with pytest.raises(ValueError, match="completions, not 4"):
        t.step(
            [
                dataclasses.replace(
                    ok[0], completions=ok[0].completions[:3], rewards=ok[0].rewards[:3]
                ),
                ok[1],
            ]
        )
    with pytest.raises(ValueError, match="split over"):
        t.step(ok[:1])
    with pytest.raises(ValueError, match="distinct ids"):
        t.step([ok[0], ok[0]])
    bad_token = dataclasses.replace(ok[0], completions=((VOCAB + 5,), *ok[0].completions[1:]))
    with pytest.raises(ValueError, match="outside the vocabulary"):
        t.step([bad_token, ok[1]])
    with pytest.raises(ValueError, match="one reward per completion"):
        TrainGroup("x", 0, (1,), ((1,),), (1.0, 2.0))
    assert t.version == 0  # nothing was applied


def test_unscorable_rewards_get_no_advantage() -> None:
    t = trainer()
    group = groups(1, seed=10)[0]
    nan_group = dataclasses.replace(group, rewards=(math.nan,) * G)
    before = {n: p.detach().clone() for n, p in t.params.items()}
    log = t.step([nan_group])
    assert math.isnan(log.reward_mean)
    for name, value in before.items():
        torch.testing.assert_close(t.params[name].detach(), value)  # zero gradient, no update


def test_checkpoint_resume_is_exact(tmp_path: Path) -> None:
    data = [groups(2, seed=20 + s, version=max(s - 1, 0)) for s in range(4)]  # some stale
    lora = LoraSettings(r=4, alpha=8, dropout=0.1, target_modules=("q_proj", "v_proj"))

    straight = trainer(lora=lora)
    straight_losses = [straight.step(batch).loss for batch in data]

    first = trainer(lora=lora)
    resumed_losses = [first.step(batch).loss for batch in data[:2]]
    path = first.save_checkpoint(tmp_path, {"consumed": ["a"]})
    assert path == tmp_path / "checkpoints" / "step-2"
    torch.manual_seed(999)  # whatever happens in between must not matter
    second = trainer(lora=lora)
    assert second.resume(path) == {"consumed": ["a"]}
    assert second.version == 2
    resumed_losses += [second.step(batch).loss for batch in data[2:]]

    assert resumed_losses == pytest.approx(straight_losses, abs=1e-6)
    for name, value in straight.params.items():
        torch.testing.assert_close(second.params[name].detach(), value.detach(), atol=1e-6, rtol=0)
