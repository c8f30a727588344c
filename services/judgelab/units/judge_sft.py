"""SFT of one pointwise proxy judge on gold labels: TRL ``SFTTrainer``, LoRA by default.

A training example is exactly what the judge sends at judging time, so training and judging
read the same position:

* non-reasoning: the judge's conversation rendered with the chat template plus the prefilled
  ``"Score: "``; the target is only the gold score's candidate tokens (``scale.candidates()``,
  tokenized in context as ``TransformersEngine.score_candidates`` tokenizes them);
* reasoning: the rendered conversation (nothing prefilled, as when it judges); the target is
  the gold reasoning cut to ``reasoning_budget`` tokens, the final ``Score: n`` line and the
  end-of-turn token.

Pairwise judges: ``judge_sft_pairwise`` builds their examples (both display orders).

The loss is on the target tokens only (labels -100 elsewhere). Rows the gold judge did not
label validly are skipped and counted by reason, never silently dropped.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from judgelab.engines.adapters import with_lora
from judgelab.engines.chat import render_prompt
from judgelab.engines.mixed_precision import MixedPrecision
from judgelab.engines.mixed_precision import resolve as resolve_mixed_precision
from judgelab.judging import JudgeConfig, PointwiseJudge
from judgelab.judging.prompting import assistant_prefix
from judgelab.spec.training import LoraSpec, SftSpec
from judgelab.units.gold_rows import GoldRow, require_rubrics, sample_of
from judgelab.units.progress import ProgressFn

IGNORE = -100
#: Progress callback: (optimiser steps done, total steps, note).
Progress = ProgressFn


@dataclass(frozen=True)
class SftExample:
    """One tokenized training sequence; ``labels`` is -100 outside the target."""

    id: str
    input_ids: list[int]
    labels: list[int]
    prompt_truncated: bool = False

    @property
    def target_ids(self) -> list[int]:
        return [t for t in self.labels if t != IGNORE]


@dataclass
class SftExamples:
    """The examples built from a split, and the rows skipped with their reasons."""

    examples: list[SftExample] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def skipped_by_reason(self) -> dict[str, int]:
        return dict(Counter(reason for _, reason in self.skipped))


@dataclass(frozen=True)
class SftResult:
    """What one SFT run did: the trained model, its per-step losses and its cost."""

    model: Any
    losses: list[float]
    steps: int
    seconds: float


def build_examples(
    judge: PointwiseJudge, tokenizer: Any, rows: Sequence[GoldRow], max_length: int
) -> SftExamples:
    """Training sequences for ``judge`` from gold rows (invalid rows skipped with a reason)."""
    require_rubrics(judge.config, rows, "the judge-training split")
    built = SftExamples()
    for row in rows:
        reason = skip_reason(judge.config, row)
        if reason is None:
            example = _example(judge, tokenizer, row, max_length)
            if isinstance(example, str):
                reason = example
            else:
                built.examples.append(example)
        if reason is not None:
            built.skipped.append((row.id, reason))
    return built


def skip_reason(config: JudgeConfig, row: GoldRow, *, check_scale: bool = True) -> str | None:
    """Why a gold row cannot teach this judge, or None (``check_scale``: the gold score must be
    one the judge can say; a pairwise judge only needs it to rank the row against another)."""
    if not row.valid:
        return f"gold_invalid:{row.invalid_reason or 'unknown'}"
    if row.score is None:
        return "gold_score_missing"
    if check_scale and row.score not in config.scale:
        return "gold_score_off_scale"
    if config.reference_guided and not row.reference:
        return "reference_missing"
    if config.reasoning and not row.reasoning.strip():
        return "gold_reasoning_missing"
    return None


def _example(
    judge: PointwiseJudge, tokenizer: Any, row: GoldRow, max_length: int
) -> SftExample | str:
    config = judge.config
    assert row.score is not None
    conversation = judge.conversation(sample_of(row))
    prompt = render_prompt(tokenizer, conversation, training_prefix(config))
    prompt_ids = encode(tokenizer, prompt)
    if config.reasoning:
        text = reasoning_target(tokenizer, config, row.reasoning, row.score)
        target = continuation_ids(tokenizer, prompt, prompt_ids, text) + [eos_id(tokenizer)]
    else:
        candidate = config.scale.candidates()[row.score - config.scale.min]
        target = continuation_ids(tokenizer, prompt, prompt_ids, candidate)
    return fit_example(row.id, prompt_ids, target, max_length)


def training_prefix(config: JudgeConfig) -> str:
    """What the judge's answer is prefilled with when it judges: the verdict label of a
    non-reasoning judge; nothing for a reasoning judge, which writes its reasoning first."""
    return "" if config.reasoning else assistant_prefix(config)


def fit_example(
    example_id: str, prompt_ids: list[int], target: list[int], max_length: int
) -> SftExample | str:
    """Prompt + target cut to ``max_length`` from the left of the prompt, or why it cannot be."""
    if len(target) >= max_length:
        return "target_longer_than_max_length"
    room = max_length - len(target)
    truncated = len(prompt_ids) > room
    prompt_ids = prompt_ids[-room:]  # the spec's rule: cut the prompt from the left
    return SftExample(
        id=example_id,
        input_ids=prompt_ids + target,
        labels=[IGNORE] * len(prompt_ids) + target,
        prompt_truncated=truncated,
    )


def reasoning_target(tokenizer: Any, config: JudgeConfig, reasoning: str, score: int) -> str:
    """Gold reasoning cut to the judge's budget, then the final score line."""
    text = reasoning.strip()
    budget = config.reasoning_budget
    if budget is not None:
        ids = encode(tokenizer, text)
        if len(ids) > budget:
            text = tokenizer.decode(ids[:budget], skip_special_tokens=True).rstrip()
    return f"{text}\n{config.scale.answer(score)}"


def continuation_ids(tokenizer: Any, prompt: str, prompt_ids: list[int], text: str) -> list[int]:
    """``text``'s tokens as the model writes them after ``prompt`` (the engine's own rule)."""
    joint = encode(tokenizer, prompt + text)
    if joint[: len(prompt_ids)] == prompt_ids and len(joint) > len(prompt_ids):
        return joint[len(prompt_ids) :]
    return encode(tokenizer, text)


def encode(tokenizer: Any, text: str) -> list[int]:
    ids: list[int] = tokenizer(text, add_special_tokens=False)["input_ids"]
    return ids


def eos_id(tokenizer: Any) -> int:
    token_id = tokenizer.eos_token_id
    if token_id is None:
        raise ValueError("the judge's tokenizer has no end-of-turn (eos) token")
    return int(token_id)


def train_sft(
    model: Any,
    tokenizer: Any,
    examples: Sequence[SftExample],
    settings: SftSpec,
    lora: LoraSpec,
    work_dir: Path,
    seed: int = 0,
    progress: Progress | None = None,
    mixed_precision: MixedPrecision = "no",
) -> SftResult:
    """Fine-tune ``model`` (wrapped with LoRA when enabled; modified in place) on ``examples``;
    ``mixed_precision`` as the judge model's (``bf16``: TRL's bfloat16 autocast)."""
    if not examples:
        raise ValueError("no valid gold-labelled example to train the judge on")
    from datasets import Dataset
    from transformers import PrinterCallback
    from trl import SFTConfig, SFTTrainer

    if lora.enabled:
        model = with_lora(model, lora)
    dataset = Dataset.from_list([{"input_ids": e.input_ids, "labels": e.labels} for e in examples])
    config = SFTConfig(
        output_dir=str(work_dir),
        num_train_epochs=settings.epochs,
        per_device_train_batch_size=settings.batch_size,
        gradient_accumulation_steps=settings.gradient_accumulation_steps,
        learning_rate=settings.learning_rate,
        max_length=None,  # examples are cut to the spec's max_length already
        **local_trainer_args(SFTConfig, model, seed, mixed_precision),
    )
    trainer = SFTTrainer(
        model=model,
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=[_progress_callback(progress)] if progress is not None else None,
    )
    trainer.remove_callback(PrinterCallback)  # progress goes through `progress`, not stdout
    started = time.perf_counter()
    with compact_lm_head():
        trainer.train()
    seconds = time.perf_counter() - started
    losses = [float(e["loss"]) for e in trainer.state.log_history if "loss" in e]
    trained: Any = trainer.model
    trained.eval()
    trained.config.use_cache = True
    return SftResult(model=trained, losses=losses, steps=trainer.state.global_step, seconds=seconds)


def local_trainer_args(
    config_class: type, model: Any, seed: int, mixed_precision: MixedPrecision = "no"
) -> dict[str, Any]:
    """The TRL config arguments every in-process training here shares: log each step, save
    nothing, report nowhere, seeded, no checkpointing, CPU when the model is on it; float32,
    or bfloat16 autocast when ``mixed_precision`` is ``bf16`` and the device runs it natively."""
    device = next(model.parameters()).device
    return {
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": [],
        "seed": seed,
        "data_seed": seed,
        "use_cpu": _on_cpu(model),
        "dataloader_num_workers": 0,
        "disable_tqdm": True,
        "bf16": resolve_mixed_precision(mixed_precision, device) == "bf16",
        "fp16": False,
        **no_checkpointing(config_class),
    }


@contextlib.contextmanager
def compact_lm_head() -> Iterator[None]:
    """TRL's fused LM head projects only the labelled positions on CUDA/XPU ("compact"), but
    every position elsewhere, to keep tile shapes fixed for compilers such as Neuron's. On CPU
    nothing recompiles, and a judge's target is a few tokens after a few hundred of prompt:
    projecting every position onto the 49k vocabulary was 44% of an SFT step here (py-spy,
    built-in model). Inside this block the CPU takes the compact path too; the loss is the same
    sum over the same labelled positions (tests/unit/test_sft_compact_head.py)."""
    import trl.trainer.utils as trl_utils

    original = trl_utils._use_triton
    trl_utils._use_triton = lambda device: device.type == "cpu" or original(device)
    try:
        yield
    finally:
        trl_utils._use_triton = original


def no_checkpointing(config_class: type) -> dict[str, Any]:
    """The config argument that turns activation checkpointing off, by its name in the
    installed transformers (``activation_checkpointing`` from v5, ``gradient_checkpointing``
    before). TRL turns it on by default: ~30% more compute per step, and it leaves
    ``use_cache=False`` on the model, which makes every later generate() quadratic."""
    fields = getattr(config_class, "__dataclass_fields__", {})
    if "activation_checkpointing" in fields:
        return {"activation_checkpointing": False}
    return {"gradient_checkpointing": False}


def _on_cpu(model: Any) -> bool:
    return bool(next(model.parameters()).device.type == "cpu")


def _progress_callback(progress: Progress) -> Any:
    from transformers import TrainerCallback

    class _Report(TrainerCallback):  # type: ignore[misc]
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **_: Any) -> None:
            loss = (logs or {}).get("loss")
            note = f"loss {loss:.4f}" if isinstance(loss, float) else ""
            progress(state.global_step, state.max_steps, note)

    return _Report()
