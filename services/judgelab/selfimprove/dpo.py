"""One round of DPO on preference pairs: TRL ``DPOTrainer``, LoRA by default.

The reference of a round is the policy the round starts from (iterative DPO, as in
Self-Rewarding LMs): with LoRA, TRL freezes a copy of the adapter as it is when the round begins
(adapter ``ref``, dropped after the round; in round 1 the fresh adapter is zero, so the
reference is the starting policy). The same adapter keeps training round after round, so each
round's adapter alone on the base model is that round's policy. Full fine-tuning takes the
given frozen model (the caller's choice) as the reference.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from judgelab.engines.adapters import with_lora
from judgelab.engines.mixed_precision import MixedPrecision
from judgelab.selfimprove.pairs import PreferencePair
from judgelab.spec.policy import DpoSelfJudgeAlgorithm
from judgelab.spec.training import LoraSpec
from judgelab.units.judge_sft import compact_lm_head, local_trainer_args
from judgelab.units.progress import ProgressFn

#: Longest prompt + answer (tokens) a DPO example keeps; TRL cuts the rest.
MAX_LENGTH = 1024
#: The frozen adapter copy TRL adds as the reference of a peft model.
REFERENCE_ADAPTER = "ref"


@dataclass(frozen=True)
class DpoResult:
    """What one DPO round did: the trained model and TRL's per-step numbers."""

    model: Any
    steps: int
    losses: list[float]
    reward_margins: list[float]
    reward_accuracies: list[float]
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "losses": self.losses,
            "reward_margins": self.reward_margins,
            "reward_accuracies": self.reward_accuracies,
            "seconds": round(self.seconds, 3),
        }


def dpo_dataset(pairs: Sequence[PreferencePair]) -> list[dict[str, Any]]:
    """Conversational DPO rows: TRL renders them with the policy's chat template."""
    return [
        {
            "prompt": [{"role": m.role, "content": m.content} for m in p.row.conversation()],
            "chosen": [{"role": "assistant", "content": p.chosen}],
            "rejected": [{"role": "assistant", "content": p.rejected}],
        }
        for p in pairs
    ]


def prepare_policy(model: Any, lora: LoraSpec) -> Any:
    """``model`` ready to train: wrapped with fresh LoRA adapters unless it has them already."""
    if lora.enabled and not hasattr(model, "peft_config"):
        return with_lora(model, lora)
    return model


def train_dpo_round(
    model: Any,
    tokenizer: Any,
    pairs: Sequence[PreferencePair],
    algorithm: DpoSelfJudgeAlgorithm,
    work_dir: Path,
    *,
    reference: Any = None,
    seed: int = 0,
    progress: ProgressFn | None = None,
    mixed_precision: MixedPrecision = "no",
) -> DpoResult:
    """``algorithm.epochs`` passes of DPO over ``pairs`` (beta and lr from the spec).

    ``model``: a peft model (reference = its adapter as the round begins) or, for full
    fine-tuning, a plain model with ``reference`` a frozen model. Trained in place."""
    if not pairs:
        raise ValueError("no preference pair to train on (every prompt was a tie)")
    from datasets import Dataset
    from transformers import PrinterCallback
    from trl import DPOConfig, DPOTrainer

    peft = hasattr(model, "peft_config")
    if not peft and reference is None:
        raise ValueError("full fine-tuning needs the starting policy as the reference model")
    config = DPOConfig(
        output_dir=str(work_dir),
        beta=algorithm.beta,
        learning_rate=algorithm.learning_rate,
        num_train_epochs=algorithm.epochs,
        per_device_train_batch_size=algorithm.batch_size,
        max_length=MAX_LENGTH,
        **local_trainer_args(DPOConfig, model, seed, mixed_precision),
    )
    trainer = DPOTrainer(
        model=model,
        ref_model=None if peft else reference,
        args=config,
        train_dataset=Dataset.from_list(dpo_dataset(pairs)),
        processing_class=tokenizer,
        callbacks=[_progress_callback(progress)] if progress is not None else None,
    )
    trainer.remove_callback(PrinterCallback)
    started = time.perf_counter()
    with compact_lm_head():
        trainer.train()
    seconds = time.perf_counter() - started
    logs = trainer.state.log_history
    trained: Any = trainer.model
    if peft and REFERENCE_ADAPTER in trained.peft_config:
        trained.delete_adapter(REFERENCE_ADAPTER)  # the next round freezes a fresh copy
    trained.eval()
    trained.config.use_cache = True
    return DpoResult(
        model=trained,
        steps=trainer.state.global_step,
        losses=_series(logs, "loss"),
        reward_margins=_series(logs, "rewards/margins"),
        reward_accuracies=_series(logs, "rewards/accuracies"),
        seconds=seconds,
    )


def _series(logs: list[dict[str, Any]], key: str) -> list[float]:
    return [float(entry[key]) for entry in logs if key in entry]


def _progress_callback(progress: ProgressFn) -> Any:
    from transformers import TrainerCallback

    class _Report(TrainerCallback):  # type: ignore[misc]
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **_: Any) -> None:
            loss = (logs or {}).get("loss")
            note = f"dpo loss {loss:.4f}" if isinstance(loss, float) else "dpo"
            progress(state.global_step, state.max_steps, note)

    return _Report()
