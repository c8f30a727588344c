"""Self-improvement: candidate sampling, batched reference-guided self-judging, DPO pairs."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from judgelab.engines.base import SamplingParams
from judgelab.engines.tiny import tiny_model, tiny_tokenizer
from judgelab.engines.transformers_engine import TransformersEngine
from judgelab.judging import JudgeConfig, PairwiseJudge
from judgelab.judging.templates import Template
from judgelab.selfimprove.pairs import best_vs_worst
from judgelab.selfimprove.prompts import MissingReferences, PromptRow
from judgelab.selfimprove.sampling import Candidates, sample_candidates
from judgelab.selfimprove.self_judge import OneCallPerComparison, SelfJudge
from tests.unit.selfimprove_support import QualityJudgeEngine, closeness

SHORT_REF_TEMPLATE = """# id: short-pair-ref-v1
# version: 1
# kind: pairwise
# reference: true
=== system ===
Judge.
=== user ===
Q: {{prompt}}
[The Start of the Reference Answer]
{{reference}}
[The End of the Reference Answer]
[The Start of Assistant A's Response]
{{response_a}}
[The End of Assistant A's Response]
[The Start of Assistant B's Response]
{{response_b}}
[The End of Assistant B's Response]
{{rubric}}
{{answer_format}}
"""


def candidates(
    texts: tuple[str, ...], reference: str | None = "exact", rid: str = "p"
) -> Candidates:
    return Candidates(PromptRow(rid, "question?", reference), texts, ("stop",) * len(texts))


def test_sampling_gives_k_seeded_candidates_per_prompt(
    tiny_engine: TransformersEngine,
) -> None:
    rows = [PromptRow(f"p{i}", f"Say {i}.") for i in range(3)]
    params = SamplingParams(max_new_tokens=6, temperature=0.8, top_p=0.95, seed=3)
    first = sample_candidates(tiny_engine, rows, 4, params)
    again = sample_candidates(tiny_engine, rows, 4, params)
    assert [c.row.id for c in first] == ["p0", "p1", "p2"]
    assert all(len(c.texts) == 4 for c in first)
    assert [c.texts for c in first] == [c.texts for c in again]  # seeded
    assert any(len(set(c.texts)) > 1 for c in first)  # rows of a batch sample independently


def test_reference_guided_scores_pick_the_reference_and_reference_free_picks_length() -> None:
    texts = ("exact", "a much longer answer", "mid answer")
    engine = QualityJudgeEngine(closeness)
    guided = SelfJudge.on(engine, with_reference=True).score([candidates(texts)])[0]
    free = SelfJudge.on(engine, with_reference=False).score([candidates(texts)])[0]
    assert max(range(3), key=lambda i: guided.scores[i]) == 0
    assert max(range(3), key=lambda i: free.scores[i]) == 1
    assert sum(guided.scores) == pytest.approx(1.5)  # mean P(win) averages 0.5 over a prompt
    assert guided.comparisons == 3 * 2 and guided.invalid_comparisons == 0


def test_score_is_mean_p_win_over_both_orders_and_cancels_position_bias() -> None:
    quality = {"x": 1.0, "y": 0.0}
    engine = QualityJudgeEngine(lambda r, _: quality[r], bias=2.0)  # strongly favours slot A
    (judged,) = SelfJudge.on(engine, with_reference=False).score([candidates(("x", "y"))])
    sig = [1 / (1 + math.exp(-z)) for z in (3.0, 1.0)]  # x first, y first
    assert judged.scores[0] == pytest.approx((sig[0] + (1 - sig[1])) / 2)
    assert judged.scores[0] + judged.scores[1] == pytest.approx(1.0)


def test_all_ordered_pairs_go_in_one_engine_call_per_chunk_and_match_unbatched() -> None:
    batch = [candidates(("a", "bb", "ccc", "dddd", "e"), rid=f"p{i}") for i in range(3)]
    engine = QualityJudgeEngine(closeness)
    batched = SelfJudge.on(engine, with_reference=True).score(batch)
    assert engine.calls == [3 * 5 * 4]  # K(K-1) ordered comparisons of 3 prompts, one call
    single = QualityJudgeEngine(closeness)
    unbatched = SelfJudge.on(OneCallPerComparison(single), with_reference=True).score(batch)
    assert single.calls == [1] * (3 * 5 * 4)
    flat = [score for j in batched for score in j.scores]
    assert [score for j in unbatched for score in j.scores] == pytest.approx(flat)


def test_missing_references_are_one_clear_error_listing_them() -> None:
    batch = [
        candidates(("a", "b"), None, "p1"),
        candidates(("a", "b")),
        candidates(("a", "b"), " ", "p3"),
    ]
    judge = SelfJudge.on(QualityJudgeEngine(closeness), with_reference=True)
    with pytest.raises(MissingReferences, match=r"2 of 3 prompts have none: p1, p3") as error:
        judge.score(batch, arm="self-judge")
    assert error.value.missing == ["p1", "p3"]
    SelfJudge.on(QualityJudgeEngine(closeness), with_reference=False).score(batch)  # no need


def test_best_vs_worst_pairs_and_counted_ties() -> None:
    engine = QualityJudgeEngine(closeness)
    judged = SelfJudge.on(engine, with_reference=True).score(
        [candidates(("exact", "zz", "z"), rid="a"), candidates(("same", "same"), rid="tie")]
    )
    pairs = best_vs_worst(judged)
    assert pairs.ties == 1 and pairs.tie_ids == ["tie"]
    (pair,) = pairs.pairs
    assert (pair.chosen, pair.rejected) == ("exact", "z") and pair.margin > 0
    assert pairs.to_json()["pairs"] == 1


def test_self_judging_on_the_tiny_model_reads_its_token_probabilities() -> None:
    tokenizer = tiny_tokenizer()
    engine = TransformersEngine(
        tiny_model(len(tokenizer)), tokenizer, device="cpu", name="tiny", context_length=2048
    )
    template = Template.parse(SHORT_REF_TEMPLATE)
    config = replace(
        JudgeConfig(name="self", model="tiny", protocol="pairwise", reference_guided=True),
        template=template.id,
    )
    judge = SelfJudge(PairwiseJudge(engine, config, template=template))
    (judged,) = judge.score([candidates(("hi", "hello there", "hey"))])
    assert judged.invalid_comparisons == 0 and judged.comparisons == 6
    assert len(set(judged.scores)) == 3 and sum(judged.scores) == pytest.approx(1.5)
