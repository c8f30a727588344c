"""Evaluate's policy outputs: the held-out prompts, and each policy version's answers to them.

Start outputs come from the base policy (version 0); each arm's end outputs from its latest
published version (a LoRA adapter merged into a copy of the base, or full weights) read with
:class:`PolicyStore`. All stages sample with ``policy.generation`` and the same seeds
(``evaluation.seed`` + batch number), so start and end differ by the weights alone.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from judgelab.engines.base import ChatMessage, Engine, SamplingParams
from judgelab.engines.policy_store import PolicyStore, PublishedPolicy
from judgelab.judging.samples import Prompt
from judgelab.units.progress import Step

POLICY_EVAL = "policy_eval.jsonl"
_ROLES = ("system", "user", "assistant")


class EvaluateError(RuntimeError):
    """Evaluate cannot run: a missing or malformed input, or an unusable service."""


@dataclass(frozen=True)
class EvalPrompt:
    """One held-out prompt of ``RUN/annotate/policy_eval.jsonl``."""

    id: str
    prompt: Prompt
    reference: str | None
    rubric: str | None = None  # the gold judge's rubric (judges with gold rubrics)

    def conversation(self) -> list[ChatMessage]:
        if isinstance(self.prompt, str):
            return [ChatMessage("user", self.prompt)]
        return list(self.prompt)


@dataclass(frozen=True)
class PolicyOutputs:
    """One policy version's answers: ``responses[i]`` holds the samples for prompt i."""

    version: int
    kind: str | None  # "lora", "full", or None for the base model
    responses: tuple[tuple[str, ...], ...]


def read_eval_prompts(run_dir: Path, limit: int | None) -> list[EvalPrompt]:
    """The first ``limit`` (all when None) prompts the Annotate unit set aside for evaluation."""
    path = run_dir / "annotate" / POLICY_EVAL
    if not path.is_file():
        raise EvaluateError(f"{path}: no held-out prompts (has the Annotate phase run?)")
    prompts: list[EvalPrompt] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                prompts.append(_eval_prompt(line, f"{path}:{number}"))
            if limit is not None and len(prompts) >= limit:
                break
    if not prompts:
        raise EvaluateError(f"{path}: no held-out prompts in the file")
    return prompts


def _eval_prompt(line: str, where: str) -> EvalPrompt:
    try:
        data = json.loads(line)
    except json.JSONDecodeError as error:
        raise EvaluateError(f"{where}: not JSON: {error}") from None
    if not isinstance(data, Mapping) or "id" not in data or "prompt" not in data:
        raise EvaluateError(f"{where}: expected an object with id and prompt")
    reference = data.get("reference")
    return EvalPrompt(
        str(data["id"]),
        _prompt(data["prompt"], where),
        None if reference is None else str(reference),
        None if data.get("rubric") is None else str(data["rubric"]),
    )


def _prompt(value: Any, where: str) -> Prompt:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and all(isinstance(m, Mapping) for m in value):
        turns = []
        for message in value:
            role = message.get("role")
            if role not in _ROLES:
                raise EvaluateError(f"{where}: prompt role must be one of {_ROLES}, got {role!r}")
            turns.append(ChatMessage(role, str(message.get("content", ""))))
        return tuple(turns)
    raise EvaluateError(f"{where}: prompt must be text or a non-empty list of chat turns")


@dataclass(frozen=True)
class Sampling:
    """How every stage samples: the spec's generation settings, the evaluation seed."""

    params: SamplingParams
    per_prompt: int
    batch_prompts: int  # prompts per generate call (one seed each)


def generate_outputs(
    engine: Engine,
    prompts: Sequence[EvalPrompt],
    sampling: Sampling,
    info: PublishedPolicy,
    step: Step,
    cancelled: Callable[[], None] = lambda: None,
) -> PolicyOutputs:
    """``per_prompt`` answers to every prompt; batch b samples with seed ``params.seed + b``."""
    per_prompt = sampling.per_prompt
    responses: list[tuple[str, ...]] = []
    seed = sampling.params.seed or 0
    for batch, start in enumerate(range(0, len(prompts), sampling.batch_prompts)):
        cancelled()
        chunk = prompts[start : start + sampling.batch_prompts]
        conversations = [p.conversation() for p in chunk for _ in range(per_prompt)]
        params = _with_seed(sampling.params, seed + batch)
        texts = [g.text for g in engine.generate(conversations, params)]
        responses += [
            tuple(texts[i * per_prompt : (i + 1) * per_prompt]) for i in range(len(chunk))
        ]
        step.advance(len(chunk))
    return PolicyOutputs(info.version, info.kind, tuple(responses))


def _with_seed(params: SamplingParams, seed: int) -> SamplingParams:
    return SamplingParams(
        max_new_tokens=params.max_new_tokens,
        temperature=params.temperature,
        top_p=params.top_p,
        seed=seed,
        stop=params.stop,
    )


def load_version(base: Engine, store: PolicyStore, version: int) -> tuple[PublishedPolicy, Engine]:
    """An engine sampling from ``version`` of ``store`` (the base engine itself for version 0)."""
    if version == 0:
        return store.published(0), base
    from judgelab.engines.transformers_engine import TransformersEngine

    if not isinstance(base, TransformersEngine):
        raise EvaluateError(
            f"policy v{version} in {store.root} needs the in-process transformers engine to "
            f"load (policy.model.engine: transformers); got {type(base).__name__}"
        )
    info, model = store.load(version, base.model)
    return info, base.sibling(model, name=f"{base.name}@v{version}")
