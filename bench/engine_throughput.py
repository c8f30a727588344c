"""Built-in model (SmolLM2-135M) on the transformers engine: load times and generation throughput.

Measures
* first load: GGUF de-quantize + safetensors cache (into a fresh temporary cache dir) + load;
* cached load: a fresh process importing torch/transformers and loading the engine from the
  cache, as every later run does;
* greedy generation tokens/s, 64 new tokens, batch 1 (the baseline: 8 prompts one by one)
  against batch 8 (the same 8 prompts in one batch); prints the ratio batch8 / batch1.

Usage: python bench/engine_throughput.py [--repeats N] [--skip-first-load]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import summary, write_results

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "services"))

PROMPTS = [
    "Write a long story about a dragon who learns to bake bread.",
    "Explain in detail how a bicycle works, part by part.",
    "Describe your ideal weekend, hour by hour.",
    "Write a detailed recipe for vegetable soup with every step.",
    "Explain the water cycle to a ten-year-old, with examples.",
    "List twenty tips for learning a new language and explain each.",
    "Write a letter to a friend about a trip to the mountains.",
    "Describe the history of the printing press in several paragraphs.",
]
NEW_TOKENS = 64
MODEL = "builtin:smollm2-135m-instruct"


def first_load_seconds() -> float:
    """De-quantize into a throw-away cache and load from it, as a first run does."""
    from judgelab.engines import build_engine
    from judgelab.engines.builtin import CACHE_ENV
    from judgelab.spec.model import ModelSpec

    previous = os.environ.get(CACHE_ENV)
    with tempfile.TemporaryDirectory(prefix="judgelab-bench-") as fresh:
        os.environ[CACHE_ENV] = fresh
        try:
            start = time.perf_counter()
            build_engine(ModelSpec(name=MODEL, device="cpu"))
            return time.perf_counter() - start
        finally:
            if previous is None:
                del os.environ[CACHE_ENV]
            else:
                os.environ[CACHE_ENV] = previous


def cached_load_seconds() -> float:
    """A fresh process: import torch/transformers + load the cached model, as a new run does."""
    code = (
        "import time; t = time.perf_counter(); "
        "from judgelab.engines import build_engine; from judgelab.spec.model import ModelSpec; "
        f"build_engine(ModelSpec(name={MODEL!r}, device='cpu')); "
        "print(time.perf_counter() - t)"
    )
    services = str(Path(__file__).resolve().parents[1] / "services")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [services, os.environ.get("PYTHONPATH")])),
    }
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return float(out.stdout.strip().splitlines()[-1])


def tokens_per_second(engine, batch_size: int, repeats: int) -> dict[str, float]:
    from judgelab.engines import ChatMessage, SamplingParams

    params = SamplingParams(max_new_tokens=NEW_TOKENS, temperature=0.0)
    conversations = [[ChatMessage("user", p)] for p in PROMPTS]
    engine.max_batch_size = batch_size
    rates, tokens = [], 0
    for _ in range(repeats):
        start = time.perf_counter()
        if batch_size == 1:
            generations = [engine.generate([c], params)[0] for c in conversations]
        else:
            generations = engine.generate(conversations, params)
        elapsed = time.perf_counter() - start
        tokens = sum(len(g.token_ids) for g in generations)
        rates.append(tokens / elapsed)
    return {
        "tokens_per_s_median": statistics.median(rates),
        "tokens_per_s_max": max(rates),
        "completion_tokens": tokens,
        "repeats": repeats,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-first-load", action="store_true")
    args = parser.parse_args()

    import torch

    from judgelab.engines import ChatMessage, SamplingParams, build_engine
    from judgelab.engines.builtin import ensure_builtin
    from judgelab.spec.model import ModelSpec

    first = None if args.skip_first_load else first_load_seconds()
    ensure_builtin(MODEL)  # the real cache, so the cached load below measures a cache hit
    loads = [cached_load_seconds() for _ in range(args.repeats)]
    engine = build_engine(ModelSpec(name=MODEL, device="cpu"))
    engine.generate([[ChatMessage("user", "hi")]], SamplingParams(max_new_tokens=4, temperature=0))

    batch1 = tokens_per_second(engine, 1, args.repeats)
    batch8 = tokens_per_second(engine, 8, args.repeats)

    if first is not None:
        print(f"first load (de-quantize + cache + load)  {first:6.1f} s")
    print(f"cached load (new process, imports incl.) {statistics.median(loads):6.1f} s")
    rate1, rate8 = batch1["tokens_per_s_median"], batch8["tokens_per_s_median"]
    print(f"batch 1 greedy, {NEW_TOKENS} new tokens    {rate1:7.1f} tok/s (baseline)")
    print(f"batch 8 greedy, {NEW_TOKENS} new tokens    {rate8:7.1f} tok/s")
    ratio = rate8 / rate1
    print(f"ratio batch8/batch1                      {ratio:6.2f}x")
    path = write_results(
        "engine_throughput",
        {
            "model": MODEL,
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "first_load_s": first,
            "cached_load": summary(loads),
            "new_tokens": NEW_TOKENS,
            "batch1": batch1,
            "batch8": batch8,
            "ratio_batch8_over_batch1": ratio,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
