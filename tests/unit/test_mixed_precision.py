"""mixed_precision: bf16 autocast for prefill, scoring and training, float32 decoding.

bfloat16 is forced on (``native_bf16`` patched) so these run the bf16 path on any CPU: emulated
bfloat16 is slow but exact to its format, and the tiny model keeps it cheap.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
from pathlib import Path

import pytest
import torch

from judgelab.engines import mixed_precision
from judgelab.engines.base import ChatMessage, SamplingParams
from judgelab.engines.mixed_precision import autocast, resolve
from judgelab.engines.tiny import tiny_engine, tiny_model, tiny_tokenizer
from judgelab.learner.batch import TrainGroup, prompt_token_ids
from judgelab.learner.settings import LoraSettings, TrainerSettings
from judgelab.learner.trainer import GrpoTrainer
from judgelab.spec.model import ModelSpec
from judgelab.spec.training import LoraSpec, SftSpec
from judgelab.units.judge_sft import SftExample, local_trainer_args, train_sft

CPU = torch.device("cpu")


@pytest.fixture
def bf16_native(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mixed_precision, "native_bf16", lambda device: True)


def conversation(text: str) -> list[ChatMessage]:
    return [ChatMessage(role="user", content=text)]


def test_no_is_a_no_op_and_bf16_autocasts_matmuls(bf16_native: None) -> None:
    a, b = torch.randn(4, 8), torch.randn(8, 4)
    with autocast("no", CPU):
        assert (a @ b).dtype == torch.float32
    with autocast(resolve("bf16", CPU), CPU):
        assert (a @ b).dtype == torch.bfloat16


def test_bf16_falls_back_to_float32_with_a_warning_where_not_native(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(mixed_precision, "native_bf16", lambda device: False)
    with caplog.at_level(logging.WARNING):
        assert resolve("bf16", CPU) == "no"
    assert "no native bfloat16" in caplog.text
    with pytest.raises(ValueError, match="mixed_precision"):
        resolve("fp8", CPU)


def test_spec_defaults_to_float32_and_refuses_unknown_modes() -> None:
    assert ModelSpec().mixed_precision == "no"
    assert ModelSpec(mixed_precision="bf16").mixed_precision == "bf16"
    with pytest.raises(ValueError):
        ModelSpec(mixed_precision="fp16")


def test_bf16_scores_stay_close_to_float32_and_siblings_keep_the_mode(bf16_native: None) -> None:
    exact = tiny_engine(seed=0)
    mixed = tiny_engine(seed=0)
    mixed.mixed_precision = resolve("bf16", CPU)
    prompts = [conversation(f"rate answer {i}: " + "word " * (5 + 7 * i)) for i in range(6)]
    candidates = [str(d) for d in range(10)]
    want = exact.score_candidates(prompts, candidates)
    got = mixed.score_candidates(prompts, candidates)
    gaps = [
        abs(math.exp(w.logprobs[c]) - math.exp(g.logprobs[c]))
        for w, g in zip(want, got, strict=True)
        for c in candidates
    ]
    assert 0 < max(gaps) < 0.02, "bf16 must move probabilities a little, and only a little"
    assert mixed.sibling(copy.deepcopy(mixed.model)).mixed_precision == "bf16"


def test_bf16_prefill_then_float32_decoding_generates(bf16_native: None) -> None:
    engine = tiny_engine(seed=0)
    engine.mixed_precision = resolve("bf16", CPU)
    params = SamplingParams(max_new_tokens=6, temperature=0.0, top_logprobs=2)
    prompts = [conversation("short"), conversation("a much longer question " * 6)]
    exact = tiny_engine(seed=0).generate(prompts, params)
    out = engine.generate(prompts, params)
    assert all(g.token_ids and len(g.logprobs) == len(g.token_ids) for g in out)
    assert out[0].token_ids[:2] == exact[0].token_ids[:2]  # greedy, barely moved by bf16
    cache = engine._prefilled([[5, 6, 7, 8], [9, 10]], 12)
    assert cache is not None
    keys, values = cache.layers[0].contents()
    assert keys.dtype == values.dtype == torch.float32  # decoding continues in float32
    grouped = engine._prefilled([[5, 6, 7, 8], [9, 10]], 12, grouped=True)
    assert grouped is not None
    parts = [*grouped.layers[0]._key_parts, *grouped.layers[0]._value_parts]
    assert {part.dtype for part in parts} == {torch.float32}


def _group(seed: int) -> TrainGroup:
    tokenizer = tiny_tokenizer()
    prompt = tuple(prompt_token_ids(tokenizer, f"question {seed}"))
    completions = tuple(tuple(range(3 + i, 8 + i)) for i in range(4))
    return TrainGroup(f"g{seed}", 0, prompt, completions, (1.0, 0.0, 3.0, 2.0))


def test_grpo_step_under_bf16_tracks_float32_and_keeps_float32_weights(bf16_native: None) -> None:
    tokenizer = tiny_tokenizer()
    settings = TrainerSettings(
        group_size=4,
        learning_rate=1e-2,
        seed=0,
        lora=LoraSettings(r=4, alpha=8, dropout=0.0, target_modules=("q_proj", "v_proj")),
    )
    vocab = len(tokenizer)
    exact = GrpoTrainer(tiny_model(vocab, seed=0), tokenizer.pad_token_id, settings)
    mixed_settings = dataclasses.replace(settings, mixed_precision="bf16")
    mixed = GrpoTrainer(tiny_model(vocab, seed=0), tokenizer.pad_token_id, mixed_settings)
    assert mixed.mixed_precision == "bf16"
    batch = [_group(1), _group(2)]
    want, got = exact.step(batch), mixed.step(batch)
    assert got.grad_norm != want.grad_norm, "the bf16 step must have run in bfloat16"
    assert got.grad_norm > 0 and abs(got.grad_norm - want.grad_norm) < 0.05 * want.grad_norm
    assert all(p.dtype == torch.float32 for p in mixed.params.values())


def test_sft_under_bf16_uses_trl_autocast_and_learns(bf16_native: None, tmp_path: Path) -> None:
    model = tiny_model(len(tiny_tokenizer()), seed=0)
    assert local_trainer_args(type("C", (), {}), model, 0, "bf16")["bf16"] is True
    assert local_trainer_args(type("C", (), {}), model, 0)["bf16"] is False
    tokenizer = tiny_tokenizer()
    ids = tokenizer("rate this: good answer. score:", add_special_tokens=False)["input_ids"]
    target = tokenizer(" 7", add_special_tokens=False)["input_ids"]
    examples = [
        SftExample(id=f"e{i}", input_ids=ids + target, labels=[-100] * len(ids) + target)
        for i in range(8)
    ]
    result = train_sft(
        model,
        tokenizer,
        examples,
        SftSpec(learning_rate=5e-3, epochs=4, batch_size=4),
        LoraSpec(r=8, alpha=16, dropout=0.0),
        tmp_path,
        mixed_precision="bf16",
    )
    assert result.losses[-1] < result.losses[0] / 2
    lora = [p for n, p in result.model.named_parameters() if "lora_" in n]
    assert lora and all(p.dtype == torch.float32 for p in lora)
