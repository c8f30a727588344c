"""Do the two engines agree? In-process `transformers` vs llama.cpp's OpenAI-compatible server.

Both run SmolLM2-135M-Instruct from the same GGUF (Q4_1), but differently: transformers
de-quantizes the weights to float32 and computes in float32; llama.cpp computes with the
quantized weights (and quantizes activations for its dot products). So they are expected to
differ a little; this measures how much, on real Arena-Hard v2.0 prompts, and does not hide it:

* generation: greedy, N new tokens, same prompts: exact-match rate of the texts, mean length of
  the common prefix (characters), tokens/s of each (the transformers engine is the baseline);
* expected score: a judge-style prompt per (prompt, o3-mini answer) pair, distribution over the
  digits 0-9 at the answer position: mean/max |E_tf - E_llama|, argmax agreement, Pearson r,
  and the probability mass each puts on the digits.

Usage: python bench/engine_agreement.py [--prompts 16] [--new-tokens 32]
Writes bench/results/engine_agreement.json.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path
from typing import Any

from common import write_results

from judgelab.engines import build_engine
from judgelab.engines.base import ChatMessage, Engine, SamplingParams
from judgelab.engines.llamacpp_server import MODEL_ALIAS, N_CTX, running_server
from judgelab.engines.openai_engine import LLAMACPP_PLAIN_SAMPLING, OpenAIEngine
from judgelab.spec.model import ModelSpec

ARENA = Path(__file__).resolve().parents[2] / "shared" / "data" / "arena-hard"
DIGITS = tuple(str(d) for d in range(10))
# The chat API cannot prefill "Score: " portably, so the untuned 135M model must be asked to
# start with the digit; of the wordings tried, this one puts the most mass on the digits.
JUDGE_INSTRUCTIONS = "Rate the answer below from 0 to 9. Reply with one digit only, no words."


def load_pairs(count: int, max_prompt_chars: int = 700, answer_words: int = 120) -> list[dict]:
    """First `count` v2.0 prompts short enough for a 2k context, with their o3-mini answers."""
    answers = {}
    with open(ARENA / "arena-hard-v2.0-answers-o3-mini-2025-01-31.jsonl", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            content = row["messages"][-1]["content"]  # {"answer": text} in these files
            answers[row["uid"]] = content["answer"] if isinstance(content, dict) else content
    pairs = []
    with open(ARENA / "arena-hard-v2.0-question.jsonl", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            if len(row["prompt"]) <= max_prompt_chars and row["uid"] in answers:
                answer = " ".join(answers[row["uid"]].split()[:answer_words])
                pairs.append({"uid": row["uid"], "prompt": row["prompt"], "answer": answer})
            if len(pairs) == count:
                break
    return pairs


def judge_conversation(pair: dict) -> list[ChatMessage]:
    body = (f"{JUDGE_INSTRUCTIONS}\n\n[Question]\n{pair['prompt']}\n\n[Answer]\n"
            f"{pair['answer']}\n\nYour one-digit rating:")
    return [ChatMessage("user", body)]


def expected(probs: dict[str, float]) -> float:
    return sum(int(c) * p for c, p in probs.items())


def common_prefix(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def pearson(xs: list[float], ys: list[float]) -> float:
    if statistics.pstdev(xs) == 0 or statistics.pstdev(ys) == 0:
        return math.nan
    return statistics.correlation(xs, ys)


def run_engine(engine: Engine, pairs: list[dict], new_tokens: int) -> dict[str, Any]:
    prompts = [[ChatMessage("user", p["prompt"])] for p in pairs]
    params = SamplingParams(max_new_tokens=new_tokens, temperature=0.0, seed=0)
    start = time.perf_counter()
    generations = engine.generate(prompts, params)
    gen_s = time.perf_counter() - start
    start = time.perf_counter()
    scores = engine.score_candidates([judge_conversation(p) for p in pairs], DIGITS)
    score_s = time.perf_counter() - start
    tokens = sum(g.completion_tokens for g in generations)
    return {
        "texts": [g.text for g in generations],
        "expected": [expected(s.probs) for s in scores],
        "argmax": [max(s.probs, key=s.probs.__getitem__) for s in scores],
        "mass": [s.mass for s in scores],
        "digit_logprobs": [s.logprobs for s in scores],
        "gen_tokens_per_s": tokens / gen_s,
        "judgements_per_s": len(pairs) / score_s,
    }


def raw_logprob_diffs(tf: dict[str, Any], ll: dict[str, Any]) -> list[float]:
    """|log p_tf(d) - log p_llama(d)| for each digit the server reported (its top-20)."""
    diffs = []
    for ours, theirs in zip(tf["digit_logprobs"], ll["digit_logprobs"], strict=True):
        diffs += [abs(ours[d] - theirs[d]) for d in DIGITS if math.isfinite(theirs[d])]
    return diffs


def expected_on_support(ours: dict[str, float], theirs: dict[str, float]) -> float:
    """Our expected score renormalised over only the digits the server reported (its top-k)."""
    kept = {d: math.exp(ours[d]) for d in DIGITS if math.isfinite(theirs[d])}
    total = sum(kept.values())
    return sum(int(d) * w for d, w in kept.items()) / total


def compare(tf: dict[str, Any], ll: dict[str, Any]) -> dict[str, Any]:
    diffs = [abs(a - b) for a, b in zip(tf["expected"], ll["expected"], strict=True)]
    raw = raw_logprob_diffs(tf, ll)
    same_support = [
        abs(expected_on_support(ours, theirs) - e_ll)
        for ours, theirs, e_ll in zip(tf["digit_logprobs"], ll["digit_logprobs"], ll["expected"],
                                      strict=True)
    ]
    pairs = list(zip(tf["texts"], ll["texts"], strict=True))
    return {
        "generation_exact_match_rate": sum(a == b for a, b in pairs) / len(pairs),
        "generation_mean_common_prefix_chars": statistics.mean(common_prefix(a, b)
                                                               for a, b in pairs),
        "generation_mean_chars": statistics.mean(len(a) for a, _ in pairs),
        "expected_score_mean_abs_diff": statistics.mean(diffs),
        "expected_score_max_abs_diff": max(diffs),
        # The same, with our distribution cut to the digits in the server's top-20: what is
        # left is the quantization difference; the rest of the gap is the top-k truncation.
        "expected_score_mean_abs_diff_same_support": statistics.mean(same_support),
        "expected_score_pearson": pearson(tf["expected"], ll["expected"]),
        "argmax_agreement_rate": statistics.mean(a == b for a, b in zip(tf["argmax"],
                                                                       ll["argmax"], strict=True)),
        "digit_logprob_mean_abs_diff": statistics.mean(raw) if raw else math.nan,
        "digit_logprob_pairs_compared": len(raw),
        "digit_mass_transformers_mean": statistics.mean(tf["mass"]),
        "digit_mass_llamacpp_mean": statistics.mean(ll["mass"]),
        "gen_tokens_per_s_ratio_llamacpp_vs_transformers": ll["gen_tokens_per_s"]
        / tf["gen_tokens_per_s"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--score-top-logprobs", type=int, nargs="+", default=[20, 200],
                        help="alternatives asked of the server at the score position; one "
                        "comparison per value (vLLM's default cap is 20)")
    args = parser.parse_args()
    pairs = load_pairs(args.prompts)
    transformers_engine = build_engine(ModelSpec())
    tf = run_engine(transformers_engine, pairs, args.new_tokens)
    print(f"transformers: {tf['gen_tokens_per_s']:.1f} gen tok/s (baseline, batched), "
          f"{tf['judgements_per_s']:.2f} judgements/s")
    by_k: dict[str, Any] = {}
    with running_server() as base_url:
        for k in args.score_top_logprobs:
            server = OpenAIEngine(MODEL_ALIAS, base_url, context_length=N_CTX,
                                  extra_body=LLAMACPP_PLAIN_SAMPLING, max_concurrency=1,
                                  score_top_logprobs=k)
            try:
                ll = run_engine(server, pairs, args.new_tokens)
            finally:
                server.close()
            by_k[f"top{k}"] = {"comparison": compare(tf, ll), **{
                key: ll[key] for key in ("gen_tokens_per_s", "judgements_per_s", "expected",
                                         "argmax")}}
            print(f"\nllama.cpp server, score_top_logprobs={k}: {ll['gen_tokens_per_s']:.1f} gen "
                  f"tok/s (one request at a time), {ll['judgements_per_s']:.2f} judgements/s")
            for key, value in by_k[f"top{k}"]["comparison"].items():
                print(f"  {key:52s} {value:.3f}")
    path = write_results("engine_agreement", {
        "settings": {"prompts": len(pairs), "new_tokens": args.new_tokens, "greedy": True,
                     "data": "arena-hard v2.0 + o3-mini answers (first 120 words)"},
        "transformers": {k: tf[k] for k in ("gen_tokens_per_s", "judgements_per_s",
                                             "expected", "argmax")},
        "llamacpp": by_k,
    })
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
