"""What `mixed_precision: bf16` buys on this machine, against float32 (the baseline) in the
same run, with the built-in model through judgelab's own code paths:

* prefill + scoring: a non-reasoning judge's `score_candidates` over 16 rows of ~380 tokens;
* decoding: 32 greedy tokens for the same 16 rows (prefill in bf16, decoding in float32);
* training: one LoRA GRPO step of the learner on 2 groups x 4 completions of 48 tokens.

Also reports how far bf16 moves the judge's probabilities. Usage: python bench/mixed_precision.py
"""

from __future__ import annotations

import copy
import math
import random
import statistics
import time
from collections.abc import Callable

from common import write_results

from judgelab.engines.base import ChatMessage, SamplingParams
from judgelab.engines.mixed_precision import native_bf16
from judgelab.engines.transformers_engine import TransformersEngine
from judgelab.learner.batch import TrainGroup, prompt_token_ids
from judgelab.learner.settings import LoraSettings, TrainerSettings
from judgelab.learner.trainer import GrpoTrainer
from judgelab.spec.model import ModelSpec

ROWS = 16
WORDS = 260  # ~380 tokens with the chat template


def best_of(fn: Callable[[], object], repeats: int = 3) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def prompts(seed: int) -> list[list[ChatMessage]]:
    rng = random.Random(seed)
    words = "the judge reads an answer about tax law cooking physics poems and code".split()
    return [
        [ChatMessage("user", " ".join(rng.choice(words) for _ in range(WORDS)) + " Score:")]
        for _ in range(ROWS)
    ]


def engine(mode: str) -> TransformersEngine:
    spec = ModelSpec(max_batch_size=ROWS, mixed_precision=mode)  # type: ignore[arg-type]
    return TransformersEngine.from_spec(spec)


def train_step_seconds(base: TransformersEngine, mode: str) -> float:
    settings = TrainerSettings(
        group_size=4,
        learning_rate=1e-5,
        lora=LoraSettings(r=8, alpha=16, dropout=0.0),
        mixed_precision=mode,  # type: ignore[arg-type]
    )
    trainer = GrpoTrainer(copy.deepcopy(base.model), base.tokenizer.pad_token_id, settings)
    rng = random.Random(0)
    prompt = tuple(prompt_token_ids(base.tokenizer, "Explain " + "why " * 150))
    completions = [
        tuple(tuple(rng.randrange(100, 20000) for _ in range(48)) for _ in range(4))
        for _ in range(2)
    ]

    def step() -> None:  # groups sampled by the current version: an on-policy step
        groups = [
            TrainGroup(f"g{i}", trainer.version, prompt, c, (1.0, 0.0, 3.0, 2.0))
            for i, c in enumerate(completions)
        ]
        trainer.step(groups)

    return best_of(step)


def measure(mode: str, rows: list[list[ChatMessage]]) -> tuple[dict[str, float], list[dict]]:
    judge = engine(mode)
    candidates = [str(d) for d in range(10)]
    scores = judge.score_candidates(rows, candidates)
    params = SamplingParams(max_new_tokens=32, temperature=0.0)
    figures = {
        "score_s": best_of(lambda: judge.score_candidates(rows, candidates)),
        "generate_s": best_of(lambda: judge.generate(rows, params), repeats=2),
        "train_step_s": train_step_seconds(judge, mode),
    }
    return figures, [s.logprobs for s in scores]


def main() -> None:
    import torch

    rows = prompts(0)
    exact, exact_scores = measure("no", rows)
    mixed, mixed_scores = measure("bf16", rows)
    gap = max(
        abs(math.exp(a[c]) - math.exp(b[c]))
        for a, b in zip(exact_scores, mixed_scores, strict=True)
        for c in a
    )
    speedups = {k: exact[k] / mixed[k] for k in exact}
    for key in exact:
        print(
            f"{key:14s} float32 {exact[key]:6.2f} s (baseline)  bf16 {mixed[key]:6.2f} s  "
            f"{speedups[key]:.2f}x"
        )
    print(f"largest probability change of a score token: {gap:.4f}")
    path = write_results(
        "mixed_precision",
        {
            "native_bf16": native_bf16(torch.device("cpu")),
            "float32_baseline": exact,
            "bf16": mixed,
            "speedup": speedups,
            "speedup_median": statistics.median(speedups.values()),
            "max_probability_change": gap,
            "rows": ROWS,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
