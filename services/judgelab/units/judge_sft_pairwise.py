"""SFT examples of a pairwise judge: every gold pair in both display orders.

A gold pair is two validly labelled responses to one prompt with different gold scores
(``judge_eval.gold_pairs``); gold prefers the higher. Each pair gives two examples, shown as
(A, B) and as (B, A), so the judge cannot learn a position; the target is gold's preferred
label in that order:

* non-reasoning: after the prefilled ``"Preferred: "``, the label's tokens (as the judge's
  candidate scoring tokenizes them);
* reasoning: the gold judge's reasoning on the response shown first, then on the one shown
  second (each cut to half the judge's ``reasoning_budget``), the ``Preferred: X`` line and the
  end-of-turn token. The gold judge is pointwise, so this is its reasoning on each response.

Rows that cannot be in a pair are skipped with a reason: an invalid gold label, a missing
reference (reference-guided judges), missing gold reasoning (reasoning judges), or
``no_gold_pair`` (no other response to its prompt with a different gold score).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from judgelab.engines.chat import render_prompt
from judgelab.judging import JudgeConfig, Pair, PairwiseJudge
from judgelab.judging.pairwise import BOTH_ORDERS
from judgelab.judging.parsing import PREFERENCE_PREFIX
from judgelab.judging.results import Order
from judgelab.units.gold_rows import GoldRow, require_rubrics
from judgelab.units.judge_eval import gold_pairs
from judgelab.units.judge_sft import (
    SftExample,
    SftExamples,
    continuation_ids,
    encode,
    eos_id,
    fit_example,
    skip_reason,
    training_prefix,
)


def build_pairwise_examples(
    judge: PairwiseJudge, tokenizer: Any, rows: Sequence[GoldRow], max_length: int
) -> SftExamples:
    """Both orders of every gold pair of ``rows`` (rows in no pair skipped with a reason)."""
    require_rubrics(judge.config, rows, "the judge-training split")
    built = SftExamples()
    usable = []
    for row in rows:
        reason = skip_reason(judge.config, row, check_scale=False)
        if reason is None:
            usable.append(row)
        else:
            built.skipped.append((row.id, reason))
    pairs, gold = gold_pairs(usable)
    by_id = {row.id: row for row in usable}
    paired: set[str] = set()
    for pair, a_wins in zip(pairs, gold, strict=True):
        first, second = (by_id[part] for part in pair.id.split("|"))
        paired.update((first.id, second.id))
        for order in BOTH_ORDERS:
            shown = (first, second) if order == "AB" else (second, first)
            label = "A" if a_wins == (order == "AB") else "B"
            example = _example(judge, tokenizer, (pair, order), shown, label, max_length)
            if isinstance(example, str):
                built.skipped.append((f"{pair.id}:{order}", example))
            else:
                built.examples.append(example)
    built.skipped.extend((row.id, "no_gold_pair") for row in usable if row.id not in paired)
    return built


def _example(
    judge: PairwiseJudge,
    tokenizer: Any,
    view: tuple[Pair, Order],
    shown: tuple[GoldRow, GoldRow],
    label: str,
    max_length: int,
) -> SftExample | str:
    config = judge.config
    pair, order = view
    prompt = render_prompt(tokenizer, judge.conversation(pair, order), training_prefix(config))
    prompt_ids = encode(tokenizer, prompt)
    if config.reasoning:
        text = f"{_reasoning(tokenizer, config, shown)}\n{PREFERENCE_PREFIX}{label}"
        target = continuation_ids(tokenizer, prompt, prompt_ids, text) + [eos_id(tokenizer)]
    else:
        target = continuation_ids(tokenizer, prompt, prompt_ids, label)
    return fit_example(f"{pair.id}:{order}", prompt_ids, target, max_length)


def _reasoning(tokenizer: Any, config: JudgeConfig, shown: tuple[GoldRow, GoldRow]) -> str:
    """Gold's reasoning on the response shown as A, then on B, within the judge's budget."""
    budget = config.reasoning_budget
    parts = []
    for label, row in zip(("A", "B"), shown, strict=True):
        text = row.reasoning.strip()
        if budget is not None:
            ids = encode(tokenizer, text)
            if len(ids) > budget // 2:
                text = tokenizer.decode(ids[: budget // 2], skip_special_tokens=True).rstrip()
        parts.append(f"Response {label}: {text}")
    return "\n\n".join(parts)
