"""GRPO optimiser steps on scored groups: advantages, clipped loss, accumulation, AdamW.

Policy version v is the weights after v optimiser steps (0 = the starting policy). A group sampled
by version u < v is importance-weighted against u's log-probs, recomputed from the trainable
weights of the last ``max_staleness`` versions, which the trainer keeps (LoRA adapters are small).
An on-policy group's old log-probs are the current ones detached (ratio 1), as in TRL.

Under DDP each rank trains on every ``world_size``-th group of the step; the loss normaliser is
the global token (or sequence) count divided by the world size, so DDP's gradient average equals
the single-process gradient of the whole batch. Under FSDP (``data_parallel: fsdp``, see
:mod:`sharding`) the same holds (its reduce-scatter averages too); every forward there is a
collective, so all ranks run the same ones: a micro-step computes old log-probs for each stale
version of the whole step, not only of its own groups. Checkpoints and saved weights are whole
tensors under any mode, so a run resumes on any number of ranks.
"""

from __future__ import annotations

import contextlib
import functools
import math
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from judgelab.engines.mixed_precision import autocast
from judgelab.engines.mixed_precision import resolve as resolve_mixed_precision
from judgelab.learner import checkpoint, sharding
from judgelab.learner.advantages import group_advantages
from judgelab.learner.batch import Batch, TrainGroup, check_vocab, collate, widths
from judgelab.learner.distributed import DistInfo, all_sum, current
from judgelab.learner.grpo import grpo_loss
from judgelab.learner.logprobs import token_entropy, token_logprobs
from judgelab.learner.policy_model import (
    Reference,
    forward_logits,
    is_adapted,
    snapshot,
    swapped_weights,
    trainable,
    wrap_policy,
)
from judgelab.learner.settings import TrainerSettings
from judgelab.learner.steplog import StepLog, StepTimes

# Sums reduced over micro-batches and ranks: loss, then token-weighted stats.
_SUMS = ("loss", "tokens", "clip_low", "clip_high", "clip_region", "ratio", "kl", "entropy")


class GrpoTrainer:
    """Owns the policy (LoRA-wrapped), its reference, the optimiser and the policy version."""

    def __init__(
        self,
        model: nn.Module,
        pad_token_id: int,
        settings: TrainerSettings,
        *,
        dist_info: DistInfo | None = None,
    ) -> None:
        self.settings = settings
        self.info = dist_info or current()
        self.pad_token_id = pad_token_id
        torch.manual_seed(settings.seed)  # LoRA's random init, identical on every rank
        # π_init is where this training starts: for a model that arrives with trained adapters
        # (a judge after SFT) that is a frozen copy of it, not the adapter-less base.
        adapted = is_adapted(model)
        self.policy = wrap_policy(model, settings.lora)
        self.policy.train()
        self.reference = Reference(self.policy, settings.lora.enabled and not adapted)
        #: FSDP: the parameters are sharded (DTensors) over the ranks; one process never is.
        self.sharded = self.info.active and settings.data_parallel == "fsdp"
        if self.sharded:
            self._shard()
        self.params = trainable(self.policy)
        if not self.params:
            raise ValueError("the policy has no trainable parameters")
        self.optimizer = torch.optim.AdamW(
            list(self.params.values()), lr=settings.learning_rate, weight_decay=0.0
        )
        ddp = self.info.active and not self.sharded
        self.model: nn.Module = DistributedDataParallel(self.policy) if ddp else self.policy
        self.device = next(self.policy.parameters()).device
        self.mixed_precision = resolve_mixed_precision(settings.mixed_precision, self.device)
        self.vocab_size = int(self.policy.get_input_embeddings().weight.shape[0])  # type: ignore[operator]
        self.version = 0
        self.history: dict[int, dict[str, Tensor]] = {}

    def _shard(self) -> None:
        """FSDP units on the transformers model inside the peft wrapper (which holds no weights
        of its own): the gold evaluation generates with that model directly (``get_base_model``),
        and its forward must gather the root unit too."""
        sharding.shard(sharding.inner_model(self.policy))
        if self.reference.frozen_copy is not None:
            sharding.shard(sharding.inner_model(self.reference.frozen_copy))

    # -- one optimiser step ------------------------------------------------------------------
    def step(self, groups: Sequence[TrainGroup], times: StepTimes | None = None) -> StepLog:
        """Train on ``groups`` (the whole step's batch, the same list on every rank)."""
        start = time.perf_counter()
        self._check(groups)
        size = self.settings.group_size
        rewards = torch.tensor([g.rewards for g in groups], dtype=torch.float32)
        advantages = group_advantages(rewards, size, self.settings.scale_rewards)
        width = widths(groups)
        num_items = self._normaliser(groups)
        mine = list(range(self.info.rank, len(groups), self.info.world_size))
        chunks = _split(mine, self.settings.gradient_accumulation_steps)
        sums = dict.fromkeys(_SUMS, 0.0)
        for index, chunk in enumerate(chunks):
            sync = index == len(chunks) - 1
            part = [groups[i] for i in chunk]
            adv = advantages[chunk].reshape(-1)
            stale = self._stale_versions(groups if self.sharded else part)
            with self._maybe_no_sync(sync):
                self._micro_step(part, adv, width, num_items, sums, stale)
        norm = torch.nn.utils.clip_grad_norm_(
            list(self.params.values()), self.settings.max_grad_norm
        )
        grad_norm = float(sharding.full(norm))  # a DTensor under FSDP
        self._remember_version()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        staleness = [self.version - g.policy_version for g in groups]
        self.version += 1
        return self._log(groups, rewards, staleness, sums, grad_norm, times, start)

    def _micro_step(
        self,
        groups: list[TrainGroup],
        advantages: Tensor,
        width: tuple[int, int],
        num_items: float,
        sums: dict[str, float],
        stale: set[int],
    ) -> None:
        batch = collate(groups, self.pad_token_id, width)
        stale_old = self._stale_logprobs(groups, batch, stale)
        ref = self._reference_logprobs(batch)
        logits = self._logits(self.model, batch)
        mask = batch.completion_mask
        completion_ids = batch.input_ids[:, -batch.completion_width :]
        logprobs = token_logprobs(logits, completion_ids, mask)
        entropy = token_entropy(logits.detach(), mask)
        old = logprobs.detach() if stale_old is None else stale_old
        if stale_old is not None:
            on_policy = self._on_policy_rows(groups)
            old = torch.where(on_policy[:, None], logprobs.detach(), stale_old)
        loss, stats = grpo_loss(
            logprobs,
            old,
            ref,
            advantages,
            mask,
            epsilon_low=self.settings.epsilon_low,
            epsilon_high=self.settings.epsilon_high,
            beta=self.settings.beta,
            loss_type=self.settings.loss_type,
            num_items=num_items,
            entropies=entropy,
        )
        loss.backward()
        tokens = stats.num_tokens
        sums["loss"] += float(loss.detach())
        sums["tokens"] += tokens
        sums["clip_low"] += stats.clip_low * tokens
        sums["clip_high"] += stats.clip_high * tokens
        sums["clip_region"] += stats.clip_region * tokens
        sums["ratio"] += stats.ratio_mean * tokens
        sums["kl"] += (stats.kl or 0.0) * tokens
        sums["entropy"] += (stats.entropy or 0.0) * tokens

    def _logits(self, model: nn.Module, batch: Batch) -> Tensor:
        """Float32 logits / temperature of ``model`` on ``batch``, the forward pass (and so its
        backward) in bfloat16 under ``mixed_precision: bf16``."""
        with autocast(self.mixed_precision, self.device):
            return forward_logits(model, batch, self.settings.temperature)

    # -- log-probs under other policies ------------------------------------------------------
    @torch.no_grad()
    def _reference_logprobs(self, batch: Batch) -> Tensor:
        """π_init's log-probs (the KL is always logged; it enters the loss only when beta > 0)."""
        with self.reference.model() as ref_model:
            logits = self._logits(ref_model, batch)
        completion_ids = batch.input_ids[:, -batch.completion_width :]
        return token_logprobs(logits, completion_ids, batch.completion_mask)

    def _stale_versions(self, groups: Sequence[TrainGroup]) -> set[int]:
        return {g.policy_version for g in groups if g.policy_version != self.version}

    @torch.no_grad()
    def _stale_logprobs(
        self, groups: list[TrainGroup], batch: Batch, versions: set[int]
    ) -> Tensor | None:
        """Old log-probs of rows sampled by an older version (NaN-free zeros elsewhere), one
        forward per version in ``versions`` (under FSDP a rank may have no row of one)."""
        if not versions:
            return None
        rows = torch.tensor([g.policy_version for g in groups for _ in g.completions])
        old = torch.zeros(batch.completion_mask.shape, dtype=torch.float32)
        completion_ids = batch.input_ids[:, -batch.completion_width :]
        was_training = self.policy.training
        self.policy.eval()  # the behaviour policy sampled without dropout
        try:
            for version in sorted(versions):
                with self._swapped(self.history[version]):
                    logits = self._logits(self.policy, batch)
                lp = token_logprobs(logits, completion_ids, batch.completion_mask)
                old = torch.where((rows == version)[:, None], lp, old)
        finally:
            self.policy.train(was_training)
        return old

    @contextlib.contextmanager
    def _swapped(self, weights: dict[str, Tensor]) -> Iterator[None]:
        """:func:`swapped_weights`; under FSDP without the whole copies of the unswapped (then
        swapped) weights that FSDP keeps from a forward (see :func:`sharding.reshard`)."""
        sharding.reshard(self.policy)
        with swapped_weights(self.params, weights):
            try:
                yield
            finally:
                sharding.reshard(self.policy)

    def _on_policy_rows(self, groups: list[TrainGroup]) -> Tensor:
        return torch.tensor(
            [g.policy_version == self.version for g in groups for _ in g.completions]
        )

    # -- bookkeeping -------------------------------------------------------------------------
    def _check(self, groups: Sequence[TrainGroup]) -> None:
        if not groups:
            raise ValueError("a step needs at least one group")
        size = self.settings.group_size
        for group in groups:
            if group.size != size:
                raise ValueError(f"group {group.group_id} has {group.size} completions, not {size}")
            lag = self.version - group.policy_version
            if lag < 0:
                raise ValueError(
                    f"group {group.group_id} is from version {group.policy_version}, "
                    f"ahead of the learner's {self.version}"
                )
            if lag > 0 and group.policy_version not in self.history:
                raise ValueError(
                    f"group {group.group_id} is {lag} versions old; the bound is "
                    f"{self.settings.max_staleness}"
                )
        if len({g.group_id for g in groups}) != len(groups):
            raise ValueError("a step's groups must have distinct ids")
        per_step = self.info.world_size * self.settings.gradient_accumulation_steps
        if len(groups) % per_step:
            raise ValueError(
                f"{len(groups)} groups do not split over {self.info.world_size} ranks x "
                f"{self.settings.gradient_accumulation_steps} micro-batches"
            )
        check_vocab(groups, self.vocab_size)

    def _normaliser(self, groups: Sequence[TrainGroup]) -> float:
        """The step's token (or sequence) count over the world size (see the module doc)."""
        if self.settings.loss_type == "token-mean":
            count = sum(len(c) for g in groups for c in g.completions)
        else:
            count = sum(g.size for g in groups)
        return max(count, 1) / self.info.world_size

    def _maybe_no_sync(self, sync: bool) -> contextlib.AbstractContextManager[Any]:
        """Gradients are reduced over the ranks only in the step's last backward."""
        if self.sharded:
            sharding.set_gradient_sync(self.policy, sync)
            return contextlib.nullcontext()
        if sync or not isinstance(self.model, DistributedDataParallel):
            return contextlib.nullcontext()
        return self.model.no_sync()

    def _remember_version(self) -> None:
        """Keep the weights of the version about to be replaced while rollouts may use it."""
        keep = self.settings.max_staleness
        if keep:
            self.history[self.version] = snapshot(self.params)
        for version in [v for v in self.history if v <= self.version - keep]:
            del self.history[version]

    def _log(
        self,
        groups: Sequence[TrainGroup],
        rewards: Tensor,
        staleness: list[int],
        sums: dict[str, float],
        grad_norm: float,
        times: StepTimes | None,
        start: float,
    ) -> StepLog:
        reduced = dict(zip(_SUMS, all_sum([sums[k] for k in _SUMS], self.info), strict=True))
        tokens = max(reduced["tokens"], 1.0)
        finite = rewards[~torch.isnan(rewards)]
        lengths = [len(c) for g in groups for c in g.completions]
        train_s = time.perf_counter() - start
        return StepLog(
            step=self.version,
            policy_version=self.version,
            loss=reduced["loss"] / self.info.world_size,
            reward_mean=float(finite.mean()) if finite.numel() else math.nan,
            reward_std=float(finite.std()) if finite.numel() > 1 else 0.0,
            kl=reduced["kl"] / tokens,
            entropy=reduced["entropy"] / tokens,
            completion_length_mean=sum(lengths) / len(lengths),
            clip_fraction=reduced["clip_region"] / tokens,
            clip_low=reduced["clip_low"] / tokens,
            clip_high=reduced["clip_high"] / tokens,
            ratio_mean=reduced["ratio"] / tokens,
            grad_norm=grad_norm,
            learning_rate=float(self.optimizer.param_groups[0]["lr"]),
            staleness_mean=sum(staleness) / len(staleness),
            staleness_max=max(staleness),
            groups=len(groups),
            completions=len(lengths),
            tokens=int(reduced["tokens"]),
            times=StepTimes(
                generate=times.generate if times else None,
                judge=times.judge if times else None,
                train=train_s,
                wait=times.wait if times else 0.0,
            ),
            group_ids=tuple(g.group_id for g in groups),
        )

    @contextlib.contextmanager
    def evaluating(self) -> Iterator[None]:
        """Forwards outside training (the gold evaluation's generation, in inference mode).
        Under FSDP every rank runs the same ones, and the whole copies they leave behind (see
        :func:`sharding.reshard`) are dropped afterwards, not reused by the next step."""
        try:
            yield
        finally:
            sharding.reshard(self.policy)

    # -- checkpoints -------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """Everything an exact resume needs, as whole tensors (RNG states are added by
        :mod:`checkpoint`). Under FSDP this gathers the shards: every rank calls it."""
        return {
            "version": self.version,
            "params": sharding.full_tree(snapshot(self.params)),
            "optimizer": sharding.full_tree(self.optimizer.state_dict()),
            "history": {v: sharding.full_tree(dict(w)) for v, w in self.history.items()},
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state` (written by any number of ranks, under any mode)."""
        params: dict[str, Tensor] = state["params"]
        if set(params) != set(self.params):
            raise ValueError("checkpoint parameters do not match this policy's trainable ones")
        sharding.reshard(self.policy)
        with torch.no_grad():
            for name, param in self.params.items():
                param.copy_(sharding.like(params[name], param))
        self.optimizer.load_state_dict(state["optimizer"])
        sharding.shard_optimizer_state(self.optimizer)
        self.history = {int(v): self._laid_out(w) for v, w in state["history"].items()}
        self.version = int(state["version"])

    def _laid_out(self, weights: dict[str, Tensor]) -> dict[str, Tensor]:
        return {name: sharding.like(value, self.params[name]) for name, value in weights.items()}

    def save_checkpoint(self, run_dir: Path, extra: dict[str, Any] | None = None) -> Path:
        """Write ``run_dir/checkpoints/step-{version}`` atomically on rank 0; returns its path.
        DDP calls it on rank 0 only; FSDP on every rank (the shards are gathered first)."""
        state = self.state()
        if not self.info.is_main:
            return checkpoint.checkpoint_root(run_dir) / f"step-{self.version}"
        return checkpoint.save(run_dir, self.version, state, extra or {})

    def resume(self, directory: Path) -> dict[str, Any]:
        """Restore weights, optimiser, history and RNG from a checkpoint; returns its extras."""
        state, extra = checkpoint.load(directory)
        self.load_state(state)
        return extra

    def save_adapter(self, directory: Path) -> None:
        """The policy's weights as peft writes them (adapter_config + safetensors) or in full,
        written by rank 0. Under FSDP every rank calls it (see :meth:`saveable`)."""
        with self.saveable() as policy:
            if self.info.is_main:
                policy.save_pretrained(str(directory))  # type: ignore[operator]

    @contextlib.contextmanager
    def saveable(self) -> Iterator[nn.Module]:
        """The policy, its ``save_pretrained`` writing whole weights (for publishing).

        Under FSDP the weights it writes (the adapter's; all for full fine-tuning) are
        gathered on entry, a collective: every rank enters, and rank 0 saves inside.
        """
        if not self.sharded:
            yield self.policy
            return
        weights = self.params if is_adapted(self.policy) else self.policy.state_dict()
        gathered = {name: sharding.full(value.detach()) for name, value in weights.items()}
        save = type(self.policy).save_pretrained  # type: ignore[attr-defined]
        # An instance attribute shadows the method while publishers call it, then goes.
        self.policy.__dict__["save_pretrained"] = functools.partial(
            save, self.policy, state_dict=gathered
        )
        try:
            yield self.policy
        finally:
            self.policy.__dict__.pop("save_pretrained", None)


def _split(items: list[int], parts: int) -> list[list[int]]:
    size = len(items) // parts
    return [items[i * size : (i + 1) * size] for i in range(parts)]
