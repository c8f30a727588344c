"""Self-judging throughput: the K(K-1) ordered comparisons of a prompt batched into one engine
call vs one engine call per comparison, in the same run, on the built-in model.

Prompts are real Arena-Hard v0.1 questions (the shortest ones, so a CPU run stays short) with
the GPT-4 baseline answers as references; candidates are sampled from the model itself. Both
modes judge the same candidates with the reference-guided template; their scores must agree.

    .venv/bin/python bench/self_judge_pairs.py [--prompts 3] [--k 4] [--max-new-tokens 48]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from common import write_results

from judgelab.engines import build_engine
from judgelab.engines.base import SamplingParams
from judgelab.selfimprove.prompts import PromptRow
from judgelab.selfimprove.sampling import Candidates, sample_candidates
from judgelab.selfimprove.self_judge import JudgedCandidates, OneCallPerComparison, SelfJudge
from judgelab.spec.model import ModelSpec

ARENA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "arena-hard"
QUESTIONS = "arena-hard-v0.1-question.jsonl"
ANSWERS = "arena-hard-v0.1-answers-gpt-4-0314.jsonl"
MODEL = "builtin:smollm2-135m-instruct"


def arena_rows(directory: Path, count: int) -> list[PromptRow]:
    """The ``count`` Arena-Hard prompts whose question + baseline answer are shortest."""
    answers: dict[str, str] = {}
    for line in (directory / ANSWERS).read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        content = row["messages"][-1]["content"]
        answers[row["uid"]] = content["answer"] if isinstance(content, dict) else content
    rows = []
    for line in (directory / QUESTIONS).read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if row["uid"] in answers:
            rows.append(PromptRow(row["uid"], row["prompt"], answers[row["uid"]]))
    rows.sort(key=lambda r: len(str(r.prompt)) + len(r.reference or ""))
    return rows[:count]


def judged_rate(judge: SelfJudge, batch: list[Candidates]) -> tuple[list[JudgedCandidates], float]:
    started = time.perf_counter()
    judged = judge.score(batch)
    return judged, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=3)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--data", type=Path, default=ARENA)
    args = parser.parse_args()
    engine = build_engine(ModelSpec(name=MODEL, device=args.device, max_batch_size=16))
    rows = arena_rows(args.data, args.prompts)
    params = SamplingParams(max_new_tokens=args.max_new_tokens, temperature=0.8, top_p=0.95, seed=0)
    candidates = sample_candidates(engine, rows, args.k, params)
    batched_judge = SelfJudge.on(engine, with_reference=True)
    unbatched_judge = SelfJudge.on(OneCallPerComparison(engine), with_reference=True)
    batched_judge.score(candidates[:1])  # warm-up: first-call allocations out of the timings
    unbatched, unbatched_s = judged_rate(unbatched_judge, candidates)
    batched, batched_s = judged_rate(batched_judge, candidates)
    comparisons = sum(j.comparisons for j in batched)
    max_diff = max(
        abs(a - b)
        for x, y in zip(batched, unbatched, strict=True)
        for a, b in zip(x.scores, y.scores, strict=True)
    )
    result: dict[str, Any] = {
        "model": MODEL,
        "device": args.device,
        "prompts": len(rows),
        "k": args.k,
        "comparisons": comparisons,
        "prompt_tokens_mean": sum(
            engine.count_tokens(c) for c in _conversations(batched_judge, candidates)
        )
        / comparisons,
        "invalid_comparisons": sum(j.invalid_comparisons for j in batched),
        "batched": {"seconds": batched_s, "comparisons_per_s": comparisons / batched_s},
        "unbatched": {"seconds": unbatched_s, "comparisons_per_s": comparisons / unbatched_s},
        "speedup": unbatched_s / batched_s,
        "max_score_difference": max_diff,
    }
    path = write_results("self_judge_pairs", result)
    print(json.dumps(result, indent=2))
    print(f"wrote {path}")


def _conversations(judge: SelfJudge, batch: list[Candidates]) -> list[Any]:
    from judgelab.judging.pairwise import BOTH_ORDERS, Group, group_pairs

    result = []
    for c in batch:
        pairs, _ = group_pairs(Group(c.row.prompt, c.texts, c.row.reference, c.row.id))
        result += [judge.judge.conversation(p, order) for p in pairs for order in BOTH_ORDERS]
    return result


if __name__ == "__main__":
    main()
