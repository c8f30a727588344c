"""Gold-judge win rate of an arm's final model against the starting model on held-out prompts.

Both models answer every prompt ``samples_per_prompt`` times with the same sampling settings
and seed; the gold judge scores every answer (with the prompt's reference when there is one);
per prompt the mean gold scores are compared as the Evaluate unit compares them (win when the
arm is more than ``TIE_MARGIN`` above, loss when that far below, else a tie, credited ½), and
the win rate gets a percentile-bootstrap interval over prompts. Prompts without a valid gold
score on either side are left out and counted.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from judgelab.engines.base import Engine, SamplingParams
from judgelab.judging import Sample
from judgelab.judging.bootstrap import DEFAULT_RESAMPLES, bootstrap_win_rate
from judgelab.selfimprove.files import write_json
from judgelab.selfimprove.prompts import PromptRow
from judgelab.selfimprove.sampling import sample_candidates
from judgelab.units.evaluate_results import TIE_MARGIN, mean, outcome
from judgelab.units.gold import GoldLabeller

WIN_RATE_FILE = "gold_win_rate.json"
CREDIT = {"win": 1.0, "tie": 0.5, "loss": 0.0}
START, END = "start", "end"


def gold_win_rate(
    start: Engine,
    end: Engine,
    rows: Sequence[PromptRow],
    gold: GoldLabeller,
    params: SamplingParams,
    *,
    samples_per_prompt: int = 1,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> dict[str, Any]:
    """The win-rate record (JSON-ready) of ``end`` against ``start`` on ``rows``."""
    if not rows:
        raise ValueError("no held-out prompts to evaluate on")
    answers = {
        START: sample_candidates(start, rows, samples_per_prompt, params),
        END: sample_candidates(end, rows, samples_per_prompt, params),
    }
    samples = [
        Sample(f"{side}:{c.row.id}#{k}", c.row.prompt, text, c.row.reference)
        for side, batch in answers.items()
        for c in batch
        for k, text in enumerate(c.texts)
    ]
    scores = {label.sample_id: label.expected for label in gold.label(samples)}
    per_prompt = []
    for row in rows:
        start_mean, end_mean = (
            mean([scores.get(f"{side}:{row.id}#{k}") for k in range(samples_per_prompt)])
            for side in (START, END)
        )
        per_prompt.append((row.id, start_mean, end_mean))
    kept = [(i, s, e, outcome(s, e)) for i, s, e in per_prompt if s is not None and e is not None]
    record: dict[str, Any] = {
        "baseline": "starting policy",
        "judge": "gold (pointwise expected scores compared)",
        "tie_margin": TIE_MARGIN,
        "prompts": len(rows),
        "samples_per_prompt": samples_per_prompt,
        "dropped": len(rows) - len(kept),
        "gold_start_mean": mean([s for _, s, _, _ in kept]),
        "gold_end_mean": mean([e for _, _, e, _ in kept]),
        "outcomes": {name: sum(o == name for *_, o in kept) for name in CREDIT},
        "per_prompt": [
            {"id": i, "gold_start": s, "gold_end": e, "outcome": o} for i, s, e, o in kept
        ],
        "win_rate": None,
        "answers": [
            {
                "id": row.id,
                **{
                    side: [
                        {"text": text, "gold": scores.get(f"{side}:{row.id}#{k}")}
                        for k, text in enumerate(candidates.texts)
                    ]
                    for side, candidates in ((START, before), (END, after))
                },
            }
            for row, before, after in zip(rows, answers[START], answers[END], strict=True)
        ],
    }
    if kept:
        rate = bootstrap_win_rate([CREDIT[o] for *_, o in kept], resamples=resamples, seed=seed)
        record["win_rate"] = dataclasses.asdict(rate)
    return record


def write_win_rate(arm_dir: Path, record: dict[str, Any]) -> Path:
    return write_json(arm_dir / WIN_RATE_FILE, record)
