"""Evaluate's result files, in the shapes ``judgelab.evaluation.report`` reads (see its doc).

* ``evaluate/cross_scores.json``: ``scores[scorer][arm]`` = mean score of the arm's end
  outputs (null: no valid judgement, or the scorer cannot score; ``skipped`` says why), plus
  ``initial[scorer]`` for the starting policy's outputs (not an arm, so kept out of ``scores``),
  valid counts and invalid reasons.
* ``evaluate/pairwise.json``: per arm and prompt, gold's outcome of end vs start. The gold judge
  is pointwise, so the outcome compares the two mean gold scores: win when end is more than
  ``TIE_MARGIN`` above start, loss when more than that below, else tie. A prompt without a valid
  gold score on either side is left out (counted in ``dropped``).
  With ``evaluation.baseline_answers`` the other side is the file's answer to each prompt
  (scored by gold once), the label ``baseline answers: FILE``, and the initial policy's own
  outcomes against the file are kept under ``initial``, with the answers' gold scores.
* ``evaluate/outputs/{arm}.jsonl``: the start and end answers with their gold scores.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from judgelab.atomic_files import write_text_atomic
from judgelab.judging import Sample
from judgelab.judging.samples import prompt_text
from judgelab.units.evaluate_outputs import EvalPrompt, PolicyOutputs
from judgelab.units.evaluate_scoring import Verdict
from judgelab.units.jsonio import write_jsonl_atomic

GOLD = "gold"
#: The JSON key of the starting policy's scores; it is not an arm, so never a column.
INITIAL = "initial"
#: Source name of the starting policy's outputs: "_" is not allowed in arm names (DNS labels).
INITIAL_SOURCE = "_initial"
#: Source name of the baseline answers file's answers (``evaluation.baseline_answers``).
BASELINE_SOURCE = "_baseline"
TIE_MARGIN = 0.5
PAIRWISE_JUDGE = "gold (pointwise scores compared)"
BASELINE = "initial policy"

#: scorer -> sample id -> verdict
Verdicts = Mapping[str, Mapping[str, Verdict]]


def sample_id(source: str, prompt: EvalPrompt, k: int) -> str:
    return f"{source}:{prompt.id}#{k}"


def samples_of(source: str, prompts: Sequence[EvalPrompt], outputs: PolicyOutputs) -> list[Sample]:
    """One judge sample per (prompt, answer) of ``source`` (INITIAL_SOURCE or an arm)."""
    return [
        Sample(sample_id(source, prompt, k), prompt.prompt, text, prompt.reference, prompt.rubric)
        for prompt, texts in zip(prompts, outputs.responses, strict=True)
        for k, text in enumerate(texts)
    ]


def mean(values: Sequence[float | None]) -> float | None:
    valid = [v for v in values if v is not None]
    return sum(valid) / len(valid) if valid else None


def source_values(
    verdicts: Mapping[str, Verdict], source: str, prompts: Sequence[EvalPrompt], per_prompt: int
) -> list[list[float | None]]:
    """``values[i][k]``: the score of answer k to prompt i (None: invalid)."""
    return [[verdicts[sample_id(source, p, k)].value for k in range(per_prompt)] for p in prompts]


def outcome(start: float, end: float) -> str:
    if end - start > TIE_MARGIN:
        return "win"
    if start - end > TIE_MARGIN:
        return "loss"
    return "tie"


def cross_scores_doc(
    verdicts: Verdicts,
    skipped: Mapping[str, str],
    sources: Mapping[str, str],
    prompts: Sequence[EvalPrompt],
    per_prompt: int,
) -> dict[str, Any]:
    """``sources``: arm -> the outputs it is scored on (INITIAL_SOURCE for one never published)."""
    scorers = [*verdicts, *skipped]
    scores: dict[str, dict[str, float | None]] = {s: {} for s in scorers}
    initial: dict[str, float | None] = {}
    valid: dict[str, dict[str, int]] = {}
    reasons: dict[str, dict[str, int]] = {}
    for scorer, table in verdicts.items():

        def values(source: str, table: Mapping[str, Verdict] = table) -> list[float | None]:
            return [v for row in source_values(table, source, prompts, per_prompt) for v in row]

        initial[scorer] = mean(values(INITIAL_SOURCE))
        valid[scorer] = {INITIAL: sum(v is not None for v in values(INITIAL_SOURCE))}
        for arm, source in sources.items():
            scores[scorer][arm] = mean(values(source))
            valid[scorer][arm] = sum(v is not None for v in values(source))
        reasons[scorer] = dict(Counter(v.reason for v in table.values() if v.reason))
    for scorer in skipped:
        scores[scorer] = dict.fromkeys(sources)
        initial[scorer] = None
    return {
        "scores": scores,
        INITIAL: initial,
        "skipped": dict(skipped),
        "valid": valid,
        "judged_per_arm": len(prompts) * per_prompt,
        "invalid_reasons": reasons,
    }


@dataclass(frozen=True)
class Against:
    """What the pairwise outcomes compare each arm's end outputs with."""

    source: str = INITIAL_SOURCE  # sample-id source of the baseline's answers
    label: str = BASELINE
    per_prompt: int | None = None  # answers per prompt; None: evaluation.samples_per_prompt


def pairwise_doc(
    gold: Mapping[str, Verdict],
    sources: Mapping[str, str],
    prompts: Sequence[EvalPrompt],
    per_prompt: int,
    notes: Mapping[str, str],
    against: Against | None = None,
) -> dict[str, Any]:
    """Gold outcomes of each arm's end outputs vs ``against`` (default: the initial policy).
    Against baseline answers, the initial policy's own outcomes are kept too (``initial``)."""
    against = against if against is not None else Against()
    base = _prompt_means(gold, against.source, prompts, against.per_prompt or per_prompt)
    arms: dict[str, list[str]] = {}
    prompt_ids: dict[str, list[str]] = {}
    dropped: dict[str, int] = {}
    for arm, source in sources.items():
        kept = _outcomes(base, _prompt_means(gold, source, prompts, per_prompt), prompts)
        arms[arm] = [o for _, o in kept]
        prompt_ids[arm] = [i for i, _ in kept]
        dropped[arm] = len(prompts) - len(kept)
    doc: dict[str, Any] = {
        "baseline": against.label,
        "judge": PAIRWISE_JUDGE,
        "tie_margin": TIE_MARGIN,
        "arms": arms,
        "prompt_ids": prompt_ids,
        "dropped": dropped,
        "notes": dict(notes),
    }
    if against.source != INITIAL_SOURCE:
        initial = _outcomes(base, _prompt_means(gold, INITIAL_SOURCE, prompts, per_prompt), prompts)
        doc[INITIAL] = {
            "outcomes": [o for _, o in initial],
            "prompt_ids": [i for i, _ in initial],
            "dropped": len(prompts) - len(initial),
        }
        doc["baseline_gold"] = dict(zip([p.id for p in prompts], base, strict=True))
        doc["baseline_gold_mean"] = mean(base)
    return doc


def win_rate(outcomes: Sequence[str]) -> float | None:
    """Mean credit of ``outcomes`` (win 1, tie ½, loss 0); None without any."""
    credit = {"win": 1.0, "tie": 0.5, "loss": 0.0}
    return sum(credit[o] for o in outcomes) / len(outcomes) if outcomes else None


def _prompt_means(
    gold: Mapping[str, Verdict], source: str, prompts: Sequence[EvalPrompt], per_prompt: int
) -> list[float | None]:
    return [mean(row) for row in source_values(gold, source, prompts, per_prompt)]


def _outcomes(
    base: Sequence[float | None], end: Sequence[float | None], prompts: Sequence[EvalPrompt]
) -> list[tuple[str, str]]:
    """(prompt id, outcome of end vs base) where both have a valid gold score."""
    return [
        (p.id, outcome(b, e))
        for p, b, e in zip(prompts, base, end, strict=True)
        if b is not None and e is not None
    ]


def output_rows(
    arm: str,
    prompts: Sequence[EvalPrompt],
    stages: Mapping[str, tuple[str, PolicyOutputs]],
    gold: Mapping[str, Verdict],
) -> list[dict[str, Any]]:
    """``stages``: "start"/"end" -> (source, outputs); start rows first, then end rows."""
    rows = []
    for stage, (source, outputs) in stages.items():
        for prompt, texts in zip(prompts, outputs.responses, strict=True):
            for k, text in enumerate(texts):
                verdict = gold.get(sample_id(source, prompt, k))
                rows.append(
                    {
                        "prompt": prompt_text(prompt.prompt),
                        "response": text,
                        "stage": stage,
                        "arm": arm,
                        "prompt_id": prompt.id,
                        "sample": k,
                        "policy_version": outputs.version,
                        "gold": None if verdict is None else verdict.value,
                    }
                )
    return rows


def write_json(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False) + "\n")


def write_outputs(out_dir: Path, rows_by_arm: Mapping[str, list[dict[str, Any]]]) -> None:
    for arm, rows in rows_by_arm.items():
        write_jsonl_atomic(out_dir / f"{arm}.jsonl", rows)
