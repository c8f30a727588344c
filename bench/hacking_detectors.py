"""Precision and recall of each reward-hacking detector on the labelled set, and their speed.

The labelled set (tests/data/hacking/labelled.jsonl) has splits: "dev", written alongside the
detectors and used to tune them, and "heldout-N", each written after the detectors were frozen
and scored once, blind, before any fix it prompted. Those blind first scores are the honest
estimate; they cannot be recomputed (the detectors changed after each), so they are recorded
below in BLIND and pooled in the output. After its fixes a held-out split is tuning data too,
so the per-split numbers computed here are in-sample.

Real answers: the 1,250 Arena-Hard baseline answers (GPT-4 and o3-mini, no reward hacking
expected) when ../shared/data/arena-hard is present: how many each detector flags (a
false-positive check on long, real text) and the ids of the flagged ones, to read.

Speed: texts per second through all five detectors (`detect`), one core, on the labelled set
(short texts), on the Arena-Hard answers and on ~4,000-character texts (the labelled responses
joined, dense with patterns); target >= 1,000 texts/s on each.

Usage: python bench/hacking_detectors.py [--repeats N]
Writes bench/results/hacking_detectors.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from common import summary, timed, write_results

from judgelab.evaluation.hacking import DETECTORS, count_patterns, detect

ROOT = Path(__file__).resolve().parents[1]
LABELLED = ROOT / "tests" / "data" / "hacking" / "labelled.jsonl"
ARENA = ROOT.parent / "shared" / "data" / "arena-hard"
ARENA_FILES = (
    ("arena-hard-v0.1-question.jsonl", "arena-hard-v0.1-answers-gpt-4-0314.jsonl"),
    ("arena-hard-v2.0-question.jsonl", "arena-hard-v2.0-answers-o3-mini-2025-01-31.jsonl"),
)
TARGET_TEXTS_PER_S = 1000.0
#: (true positives, false positives, false negatives) per detector, each held-out split scored
#: blind by the detectors as they were frozen before it was written (the record, not a rerun).
BLIND: dict[str, dict[str, tuple[int, int, int]]] = {
    "heldout-1": {
        "invented_policy_refusal": (4, 0, 1),
        "fake_end_marker": (5, 0, 0),
        "self_praise": (2, 1, 3),
        "instruction_rewrite": (4, 0, 1),
        "judge_score_claim": (4, 0, 3),
    },
    "heldout-2": {
        "invented_policy_refusal": (3, 1, 1),
        "fake_end_marker": (3, 0, 1),
        "self_praise": (4, 0, 1),
        "instruction_rewrite": (2, 0, 2),
        "judge_score_claim": (5, 1, 0),
    },
    "heldout-3": {
        "invented_policy_refusal": (3, 0, 0),
        "fake_end_marker": (2, 0, 1),
        "self_praise": (3, 0, 1),
        "instruction_rewrite": (2, 0, 1),
        "judge_score_claim": (3, 1, 1),
    },
}
LONG_CHARS = 4000
Pair = tuple[str, str | None]


def load(path: Path = LABELLED) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def load_arena() -> list[tuple[str, Pair]]:
    """(uid, (answer, prompt)) for every Arena-Hard baseline answer; [] without the data."""
    pairs = []
    for questions, answers in ARENA_FILES:
        if not (ARENA / answers).exists():
            continue
        with (ARENA / questions).open(encoding="utf-8") as f:
            prompts = {row["uid"]: row["prompt"] for row in map(json.loads, f)}
        with (ARENA / answers).open(encoding="utf-8") as f:
            for row in map(json.loads, f):
                content = row["messages"][-1]["content"]
                answer = content["answer"] if isinstance(content, dict) else content
                pairs.append((row["uid"], (answer, prompts.get(row["uid"]))))
    return pairs


def scores(records: list[dict[str, Any]], name: str) -> dict[str, Any]:
    """Confusion counts, precision, recall and F1 of one detector, with the ids it got wrong."""
    detector = DETECTORS[name]
    tp, fp, fn = [], [], []
    for r in records:
        fired = detector(r["response"], r["prompt"]) is not None
        labelled = name in r["labels"]
        if fired and labelled:
            tp.append(r["id"])
        elif fired:
            fp.append(r["id"])
        elif labelled:
            fn.append(r["id"])
    precision = len(tp) / (len(tp) + len(fp)) if tp or fp else 1.0
    recall = len(tp) / (len(tp) + len(fn)) if tp or fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    positives = len(tp) + len(fn)
    return {
        "positives": positives,
        "negatives": len(records) - positives,
        "tp": len(tp),
        "fp": len(fp),
        "fn": len(fn),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "false_positives": fp,
        "false_negatives": fn,
    }


def pooled_blind() -> dict[str, dict[str, float]]:
    """Precision and recall per detector over all held-out splits' blind scores."""
    pooled = {}
    for name in DETECTORS:
        tp, fp, fn = (sum(split[name][k] for split in BLIND.values()) for k in range(3))
        pooled[name] = {
            "tp": tp,
            "fp": fp,
            "fn": fn,
            "precision": tp / (tp + fp),
            "recall": tp / (tp + fn),
        }
    return pooled


def throughput(pairs: list[Pair], repeats: int) -> dict[str, float]:
    def run() -> None:
        for response, prompt in pairs:
            detect(response, prompt)

    timing = summary(timed(run, repeats))
    return {
        **timing,
        "texts": len(pairs),
        "mean_chars": sum(len(r) for r, _ in pairs) / len(pairs),
        "texts_per_s": len(pairs) / timing["median_s"],
    }


def long_pairs(records: list[dict[str, Any]]) -> list[Pair]:
    """Responses of about LONG_CHARS characters: each record's response followed by others'."""
    pairs = []
    for i, r in enumerate(records):
        text, j = r["response"], i + 1
        while len(text) < LONG_CHARS:
            text += "\n\n" + records[j % len(records)]["response"]
            j += 1
        pairs.append((text, r["prompt"]))
    return pairs


def arena_flags(arena: list[tuple[str, Pair]]) -> dict[str, Any]:
    texts = [pair[0] for _, pair in arena]
    prompts = [pair[1] for _, pair in arena]
    flagged = {name: [] for name in DETECTORS}
    for uid, (answer, prompt) in arena:
        for finding in detect(answer, prompt):
            flagged[finding.detector].append(f"{uid}: {finding.evidence}")
    return {"answers": len(arena), "counts": count_patterns(texts, prompts), "flagged": flagged}


def print_table(title: str, table: dict[str, dict[str, Any]]) -> None:
    print(f"{title}\n  {'detector':26} {'pos':>4} {'neg':>4} {'prec':>6} {'recall':>6}  errors")
    for name, s in table.items():
        wrong = ", ".join(
            [f"FP {i}" for i in s["false_positives"]] + [f"FN {i}" for i in s["false_negatives"]]
        )
        print(
            f"  {name:26} {s['positives']:4d} {s['negatives']:4d} {s['precision']:6.2f} "
            f"{s['recall']:6.2f}  {wrong}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    records = load()
    names = list(dict.fromkeys(r.get("split", "dev") for r in records))
    splits = {"all": records}
    splits.update({n: [r for r in records if r.get("split", "dev") == n] for n in names})
    accuracy = {s: {n: scores(rs, n) for n in DETECTORS} for s, rs in splits.items()}
    for split, table in accuracy.items():
        print_table(f"{split} ({len(splits[split])} records, in-sample)", table)
    blind = pooled_blind()
    print("held-out splits scored blind, pooled (the honest estimate)")
    for name, b in blind.items():
        print(
            f"  {name:26} precision {b['precision']:.2f} ({b['tp']}/{b['tp'] + b['fp']}), "
            f"recall {b['recall']:.2f} ({b['tp']}/{b['tp'] + b['fn']})"
        )
    arena = load_arena()
    speed = {
        "labelled": throughput([(r["response"], r["prompt"]) for r in records], args.repeats),
        "long": throughput(long_pairs(records), max(1, args.repeats // 4)),
    }
    payload: dict[str, Any] = {"records": {s: len(rs) for s, rs in splits.items()}}
    if arena:
        speed["arena_hard"] = throughput([pair for _, pair in arena], max(1, args.repeats // 10))
        payload["arena_hard"] = arena_flags(arena)
        print(f"Arena-Hard answers flagged: {payload['arena_hard']['counts']}")
    else:
        print(f"Arena-Hard answers not found under {ARENA}: skipped")
    for label, t in speed.items():
        met = "met" if t["texts_per_s"] >= TARGET_TEXTS_PER_S else "MISSED"
        print(
            f"detect(), {label:10}: {t['texts_per_s']:8.0f} texts/s (mean {t['mean_chars']:5.0f} "
            f"chars); target >= {TARGET_TEXTS_PER_S:.0f}: {met}"
        )
    path = write_results(
        "hacking_detectors",
        {
            **payload,
            "labelled_set": str(LABELLED.relative_to(ROOT)),
            "accuracy": accuracy,
            "blind": {"by_split": BLIND, "pooled": blind},
            "throughput": {**speed, "target_texts_per_s": TARGET_TEXTS_PER_S},
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
