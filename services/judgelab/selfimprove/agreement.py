"""How often a pairwise judge prefers what gold prefers, with and without the reference answer.

The pairs are held-out answers Evaluate already has gold scores for: per prompt, the distinct
answers of the starting policy and of every arm's final model; every two of them whose gold
scores differ by more than ``TIE_MARGIN`` is a pair (gold prefers the higher). The judge sees
each pair in both orders (the self-judging protocol); it agrees when it prefers gold's choice
(credit 1), half when its two orders cancel out exactly (a tie), else 0. Pairs with no valid
order are counted, not credited. Agreement gets a percentile-bootstrap interval over pairs.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from judgelab.engines.base import Engine
from judgelab.judging import PairwiseJudge
from judgelab.judging.bootstrap import DEFAULT_RESAMPLES, bootstrap_win_rate
from judgelab.judging.pairwise import position_consistency_rate
from judgelab.judging.samples import Pair
from judgelab.selfimprove.prompts import PromptRow
from judgelab.selfimprove.self_judge import self_judge_config
from judgelab.units.evaluate_results import TIE_MARGIN

#: Pairs per engine call (each is shown in both orders).
PAIRS_PER_CALL = 16


@dataclass(frozen=True)
class GoldPair:
    """Two answers to one prompt with gold scores far enough apart to have a preference."""

    id: str
    row: PromptRow
    first: str
    second: str
    gold_first: float
    gold_second: float

    @property
    def gold_prefers_first(self) -> bool:
        return self.gold_first > self.gold_second


def gold_pairs(
    rows: Sequence[PromptRow],
    answers: Iterable[tuple[str, str, float | None]],
    margin: float = TIE_MARGIN,
) -> list[GoldPair]:
    """``answers``: (prompt id, text, gold score); duplicates and unscored answers are dropped,
    answers to prompts not in ``rows`` ignored."""
    scored: dict[str, dict[str, float]] = {row.id: {} for row in rows}
    for prompt_id, text, gold in answers:
        if gold is not None and prompt_id in scored:
            scored[prompt_id].setdefault(text, gold)
    result = []
    for row in rows:
        texts = list(scored[row.id].items())
        for (i, (a, gold_a)), (j, (b, gold_b)) in itertools.combinations(enumerate(texts), 2):
            if abs(gold_a - gold_b) > margin:
                result.append(GoldPair(f"{row.id}:{i}-{j}", row, a, b, gold_a, gold_b))
    return result


def agreement_with_gold(
    engine: Engine,
    pairs: Sequence[GoldPair],
    with_reference: bool,
    *,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> dict[str, Any]:
    """The agreement record (JSON-ready) of the self-judge on ``engine`` over ``pairs``."""
    judge = PairwiseJudge(engine, self_judge_config(engine, with_reference))
    started = time.perf_counter()
    judgements = []
    for start in range(0, len(pairs), PAIRS_PER_CALL):
        chunk = pairs[start : start + PAIRS_PER_CALL]
        judgements += judge.judge(
            [Pair(p.id, p.row.prompt, p.first, p.second, p.row.reference) for p in chunk]
        )
    seconds = time.perf_counter() - started
    credits = [
        _credit(j.preferred, p.gold_prefers_first)
        for p, j in zip(pairs, judgements, strict=True)
        if j.valid
    ]
    record: dict[str, Any] = {
        "with_reference": with_reference,
        "judge": engine.name,
        "pairs": len(pairs),
        "valid": len(credits),
        "invalid": len(pairs) - len(credits),
        "position_consistency": position_consistency_rate(judgements),
        "seconds": round(seconds, 3),
        "agreement": None,
    }
    if credits:
        rate = bootstrap_win_rate(credits, resamples=resamples, seed=seed)
        record["agreement"] = dataclasses.asdict(rate)
    return record


def _credit(preferred: str | None, gold_prefers_first: bool) -> float:
    if preferred == "tie":
        return 0.5
    return 1.0 if (preferred == "A") == gold_prefers_first else 0.0


def answers_of(records: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, str, float | None]]:
    """(prompt id, text, gold) of every answer in the arms' ``gold_win_rate.json`` records."""
    return [
        (str(entry["id"]), str(answer["text"]), answer.get("gold"))
        for record in records.values()
        for entry in record.get("answers") or ()
        for side in ("start", "end")
        for answer in entry.get(side) or ()
    ]
