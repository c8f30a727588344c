"""The ``sft-on-references`` arm: supervised fine-tuning of the policy on the reference answers.

An example is the policy's chat prompt (chat template, generation header) followed by the
reference and the end-of-turn token, the loss on the reference tokens only; it trains with the
judge-SFT trainer (TRL ``SFTTrainer``, LoRA by default, no gradient checkpointing). Settings
match the DPO arms' budget: the DPO learning rate and batch size, ``epochs x rounds`` passes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from judgelab.engines.chat import render_prompt
from judgelab.engines.mixed_precision import MixedPrecision
from judgelab.selfimprove.dpo import MAX_LENGTH
from judgelab.selfimprove.prompts import PromptRow, require_references
from judgelab.spec.policy import DpoSelfJudgeAlgorithm
from judgelab.spec.training import LoraSpec, SftSpec
from judgelab.units.judge_sft import (
    IGNORE,
    SftExample,
    SftResult,
    continuation_ids,
    encode,
    eos_id,
    train_sft,
)
from judgelab.units.progress import ProgressFn

SFT_ON_REFERENCES = "sft-on-references"


def sft_settings(algorithm: DpoSelfJudgeAlgorithm, max_length: int = MAX_LENGTH) -> SftSpec:
    """The SFT baseline's settings: the same learning rate, batch and passes as DPO."""
    return SftSpec(
        learning_rate=algorithm.learning_rate,
        epochs=algorithm.epochs * algorithm.rounds,
        batch_size=algorithm.batch_size,
        max_length=max_length,
    )


def reference_examples(
    tokenizer: Any, rows: Sequence[PromptRow], max_length: int = MAX_LENGTH
) -> tuple[list[SftExample], list[str]]:
    """(examples, ids skipped because the reference alone fills ``max_length``)."""
    require_references(rows, SFT_ON_REFERENCES)
    examples, too_long = [], []
    for row in rows:
        assert row.reference is not None
        prompt = render_prompt(tokenizer, row.conversation())
        prompt_ids = encode(tokenizer, prompt)
        target = continuation_ids(tokenizer, prompt, prompt_ids, row.reference)
        target = target + [eos_id(tokenizer)]
        if len(target) >= max_length:
            too_long.append(row.id)
            continue
        prompt_ids = prompt_ids[-(max_length - len(target)) :]
        examples.append(
            SftExample(row.id, prompt_ids + target, [IGNORE] * len(prompt_ids) + target)
        )
    return examples, too_long


def train_on_references(
    model: Any,
    tokenizer: Any,
    rows: Sequence[PromptRow],
    algorithm: DpoSelfJudgeAlgorithm,
    lora: LoraSpec,
    work_dir: Path,
    seed: int = 0,
    progress: ProgressFn | None = None,
    mixed_precision: MixedPrecision = "no",
) -> tuple[SftResult, list[str]]:
    """SFT of ``model`` (modified in place) on the references; (result, ids too long)."""
    settings = sft_settings(algorithm)
    examples, too_long = reference_examples(tokenizer, rows, settings.max_length)
    result = train_sft(
        model,
        tokenizer,
        examples,
        settings,
        lora,
        work_dir,
        seed=seed,
        progress=progress,
        mixed_precision=mixed_precision,
    )
    return result, too_long
