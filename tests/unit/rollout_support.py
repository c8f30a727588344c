"""Shared pieces of the rollout generator tests: LoRA adapters, teacher-forced log-probs."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch

from judgelab.engines.base import ChatMessage
from judgelab.engines.chat import render_prompt
from judgelab.engines.policy_store import PolicyStore
from judgelab.engines.transformers_engine import TransformersEngine
from judgelab.rollout.generator import PromptInput, RolloutGenerator
from judgelab.rollout.policy import PolicyHolder

PROMPTS = [
    PromptInput("p0", [ChatMessage("user", "Name a prime number.")]),
    PromptInput("p1", [ChatMessage("system", "Be brief."), ChatMessage("user", "Hi there")]),
]


def lora_model(base: Any, seed: int) -> Any:
    """``base`` (copied) with a random, non-zero LoRA adapter on the attention projections."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=4, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return get_peft_model(copy.deepcopy(base), config).eval()


def generator_on(
    engine: TransformersEngine, store: PolicyStore | None = None, **kwargs: Any
) -> RolloutGenerator:
    return RolloutGenerator(PolicyHolder(engine, store), **kwargs)


@torch.inference_mode()
def teacher_forced(
    model: Any, tokenizer: Any, conversation: Sequence[ChatMessage], completion: list[int]
) -> list[float]:
    """log p(completion[t] | prompt, completion[:t]) from one unpadded forward pass, raw logits."""
    prompt = tokenizer(render_prompt(tokenizer, conversation), add_special_tokens=False)
    prompt_ids = prompt["input_ids"]
    ids = torch.tensor([prompt_ids + completion])
    logits = model(input_ids=ids).logits[0].float()
    logprobs = torch.log_softmax(logits, dim=-1)
    start = len(prompt_ids) - 1
    return [float(logprobs[start + t, token]) for t, token in enumerate(completion)]
