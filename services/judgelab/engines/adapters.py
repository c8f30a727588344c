"""Trained LoRA adapters on top of a transformers engine: where a run keeps a trained judge's
adapter, and an engine with it merged in (what the judge pool serves once TrainJudges ran)."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from judgelab.engines.transformers_engine import TransformersEngine


def judge_adapter_dir(run: Path, judge: str) -> Path:
    """RUN/judges/{judge}/adapter: written by TrainJudges, read by the judge pool."""
    return run / "judges" / judge / "adapter"


def apply_adapter(base: TransformersEngine, adapter: Path) -> TransformersEngine:
    """A new engine on a copy of ``base``'s model with the LoRA adapter at ``adapter`` merged."""
    from peft import PeftModel

    model = PeftModel.from_pretrained(copy.deepcopy(base.model), str(adapter))
    return merged_engine(model, base)


def merged_engine(model: Any, base: TransformersEngine) -> TransformersEngine:
    """An engine on ``model`` with LoRA weights merged in (plain forward passes, no adapter hop)."""
    merged = model.merge_and_unload() if hasattr(model, "merge_and_unload") else model
    # TRL's trainers set ``model.forward`` on the instance to a closure over the model's bound
    # forward at that time: on a deep copy it still runs the original model's weights.
    vars(merged).pop("forward", None)
    return base.sibling(merged, name=f"{base.name}+trained")


class LoraShape(Protocol):
    """What a LoRA set-up says (the spec's ``LoraSpec``, the learner's settings)."""

    @property
    def r(self) -> int: ...
    @property
    def alpha(self) -> int: ...
    @property
    def dropout(self) -> float: ...
    @property
    def target_modules(self) -> Sequence[str]: ...


def with_lora(model: Any, lora: LoraShape) -> Any:
    """``model`` wrapped with fresh LoRA adapters (peft); only the adapters train."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules),
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)
