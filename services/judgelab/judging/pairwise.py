"""Pairwise judge: which of two responses is better, judged in both display orders.

Each pair is shown as (A, B) and as (B, A) in one batch, and P(A preferred) is the mean over
the valid orders, which cancels the judge's position bias to first order. A pair is position
consistent when both orders give the same verdict.

* Non-reasoning: P(first shown is better) is read from the probabilities of ``A`` and ``B``
  after the prefilled ``"Preferred: "`` (bare letter on chat APIs), renormalised over the two.
* Reasoning: the verdict is the strictly parsed last line ``Preferred: A|B``; its probability
  comes from the top log-probs at the letter's token when available, else it is 1 or 0.

For GRPO, :meth:`PairwiseJudge.group_win_rates` gives each of G responses its mean win rate
against the other G-1 (all G(G-1) ordered comparisons in one batched call). An invalid pair
counts 0.5 for both sides, so the win rates of a group always average 0.5.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from judgelab.engines.base import CandidateScores, ChatMessage, EngineError, Generation
from judgelab.judging.engine_calls import generate_verdicts, score_with_tokens
from judgelab.judging.judge_base import JudgeBase
from judgelab.judging.logprobs import verdict_probabilities
from judgelab.judging.parsing import PREFERENCE_OPTIONS, parse_preference
from judgelab.judging.pointwise import join_reasoning
from judgelab.judging.prompting import assistant_prefix
from judgelab.judging.results import (
    GroupJudgement,
    InvalidReason,
    Order,
    PairwiseJudgement,
    PairwiseOrderJudgement,
    Verdict,
)
from judgelab.judging.samples import Pair, Prompt, prompt_text, reference_text

BOTH_ORDERS: tuple[Order, ...] = ("AB", "BA")


@dataclass(frozen=True)
class Group:
    """G responses to one prompt (a GRPO group), to be ranked by mean win rate."""

    prompt: Prompt
    responses: Sequence[str]
    reference: str | None = None
    id: str = "group"
    rubric: str | None = None


class PairwiseJudge(JudgeBase):
    """Compares pairs with one engine, config and template (default: the config's)."""

    protocol = "pairwise"

    def judge(self, pairs: Sequence[Pair], both_orders: bool = True) -> list[PairwiseJudgement]:
        orders = BOTH_ORDERS if both_orders else BOTH_ORDERS[:1]
        jobs = [(pair, order) for pair in pairs for order in orders]
        conversations = [self.conversation(pair, order) for pair, order in jobs]
        if not jobs:
            return []
        if self.config.reasoning:
            results, latency = self._judge_reasoning(jobs, conversations)
        else:
            results, latency = self._judge_direct(jobs, conversations)
        n = len(orders)
        return [
            self._combine(pair.id, tuple(results[k * n : (k + 1) * n]), latency)
            for k, pair in enumerate(pairs)
        ]

    def judge_groups(self, groups: Sequence[Group]) -> list[GroupJudgement]:
        """Every group's win rates, all groups' comparisons in one batched call."""
        planned = [group_pairs(group) for group in groups]
        judged = iter(self.judge([pair for pairs, _ in planned for pair in pairs]))
        return [
            win_rates(len(group.responses), ij, judged)
            for group, (_, ij) in zip(groups, planned, strict=True)
        ]

    def group_win_rates(
        self,
        prompt: Prompt,
        responses: Sequence[str],
        reference: str | None = None,
        rubric: str | None = None,
    ) -> list[float]:
        """Mean win rate of each response against the other G-1 (the pairwise GRPO reward)."""
        (group,) = self.judge_groups([Group(prompt, responses, reference, rubric=rubric)])
        return list(group.win_rates)

    def conversation(self, pair: Pair, order: Order) -> list[ChatMessage]:
        first, second = (
            (pair.response_a, pair.response_b)
            if order == "AB"
            else (pair.response_b, pair.response_a)
        )
        return self.prompt.render(
            {
                "prompt": prompt_text(pair.prompt),
                "response_a": first,
                "response_b": second,
                "reference": reference_text(pair.id, pair.reference, self.config.reference_guided),
                **self.prompt.item_values(pair.id, pair.rubric),
            }
        )

    # -- non-reasoning ------------------------------------------------------------------
    def _judge_direct(
        self, jobs: list[tuple[Pair, Order]], conversations: list[list[ChatMessage]]
    ) -> tuple[list[PairwiseOrderJudgement], float]:
        results, latency = score_with_tokens(
            self.engine,
            conversations,
            PREFERENCE_OPTIONS,
            assistant_prefix(self.config),
            self.count_prompt_tokens,
        )
        return [
            _from_scores(order, result) for (_, order), result in zip(jobs, results, strict=True)
        ], latency

    # -- reasoning ----------------------------------------------------------------------
    def _judge_reasoning(
        self, jobs: list[tuple[Pair, Order]], conversations: list[list[ChatMessage]]
    ) -> tuple[list[PairwiseOrderJudgement], float]:
        results, latency = generate_verdicts(
            self.engine, self.config, conversations, top_logprobs=True
        )
        return [
            _from_generation(order, result)
            for (_, order), result in zip(jobs, results, strict=True)
        ], latency

    # -- combining orders ---------------------------------------------------------------
    def _combine(
        self, pair_id: str, orders: tuple[PairwiseOrderJudgement, ...], latency: float
    ) -> PairwiseJudgement:
        valid = [order for order in orders if order.valid]
        if not valid:
            return PairwiseJudgement(
                pair_id=pair_id,
                stamp=self.prompt.stamp,
                p_a_preferred=0.5,
                preferred=None,
                orders=orders,
                position_consistent=False,
                valid=False,
                invalid_reason=orders[0].invalid_reason,
                latency_s=latency,
                detail=orders[0].detail,
            )
        p_a = sum(order.p_a_preferred for order in valid) / len(valid)
        return PairwiseJudgement(
            pair_id=pair_id,
            stamp=self.prompt.stamp,
            p_a_preferred=p_a,
            preferred=verdict_of(p_a),
            orders=orders,
            position_consistent=len({order.preferred for order in valid}) == 1,
            valid=True,
            invalid_reason=None,
            latency_s=latency,
        )


def position_consistency_rate(judgements: Sequence[PairwiseJudgement]) -> float | None:
    """Share of pairs, among those with at least two valid orders, whose orders agree;
    None when no pair has two valid orders."""
    both = [j for j in judgements if sum(order.valid for order in j.orders) >= 2]
    if not both:
        return None
    return sum(j.position_consistent for j in both) / len(both)


def verdict_of(p_a_preferred: float) -> Verdict:
    if p_a_preferred > 0.5:
        return "A"
    if p_a_preferred < 0.5:
        return "B"
    return "tie"


def _from_scores(
    order: Order, result: tuple[CandidateScores, int] | EngineError
) -> PairwiseOrderJudgement:
    if isinstance(result, EngineError):
        return _invalid(order, "engine_error", "", 0, 0, str(result))
    scores, prompt_tokens = result
    probs = scores.probs
    if not any(p > 0 for p in probs.values()):
        return _invalid(order, "unparseable", "", prompt_tokens, 0, "no probability on A or B")
    p_a = probs[_slot_of_a(order)]
    return _valid(order, p_a, verdict_of(p_a), "", prompt_tokens, 0)


def _from_generation(order: Order, result: Generation | EngineError) -> PairwiseOrderJudgement:
    if isinstance(result, EngineError):
        return _invalid(order, "engine_error", "", 0, 0, str(result))
    parsed = parse_preference(result.text, result.finish_reason)
    reasoning = join_reasoning(result.reasoning, parsed.reasoning)
    tokens = (result.prompt_tokens, result.completion_tokens)
    if parsed.verdict is None:
        assert parsed.invalid_reason is not None
        return _invalid(order, parsed.invalid_reason, reasoning, *tokens, "")
    preferred: Verdict = "A" if parsed.verdict == _slot_of_a(order) else "B"
    raw = verdict_probabilities(
        result, parsed.line[: parsed.verdict_end], parsed.verdict, PREFERENCE_OPTIONS
    )
    mass = sum(raw.values()) if raw else 0.0
    if raw is None or mass <= 0:
        p_a = 1.0 if preferred == "A" else 0.0
    else:
        p_a = raw[_slot_of_a(order)] / mass
    return _valid(order, p_a, preferred, reasoning, *tokens)


def _slot_of_a(order: Order) -> str:
    """The label response A is shown under in this order."""
    return "A" if order == "AB" else "B"


def group_pairs(group: Group) -> tuple[list[Pair], list[tuple[int, int]]]:
    """The G(G-1)/2 pairs of a group (response i as A, j as B, i < j) and their (i, j)."""
    if len(group.responses) < 2:
        raise ValueError(f"group {group.id!r}: win rates need at least 2 responses")
    n = len(group.responses)
    ij = [(i, j) for i in range(n) for j in range(i + 1, n)]
    pairs = [
        Pair(f"{group.id}:{i}-{j}", group.prompt, group.responses[i], group.responses[j],
             group.reference, group.rubric)
        for i, j in ij
    ]
    return pairs, ij


def win_rates(
    size: int, pairs: list[tuple[int, int]], judged: Iterator[PairwiseJudgement]
) -> GroupJudgement:
    """Win rates of ``size`` responses from the next judgements, one per (i, j) in ``pairs``;
    an invalid pair has p_a_preferred 0.5 and so counts half a win for each side."""
    wins = [0.0] * size
    taken = []
    for i, j in pairs:
        judgement = next(judged)
        wins[i] += judgement.p_a_preferred
        wins[j] += 1.0 - judgement.p_a_preferred
        taken.append(judgement)
    return GroupJudgement(tuple(w / (size - 1) for w in wins), tuple(taken))


def _valid(
    order: Order,
    p_a: float,
    preferred: Verdict,
    reasoning: str,
    prompt_tokens: int,
    completion_tokens: int,
) -> PairwiseOrderJudgement:
    return PairwiseOrderJudgement(
        order, p_a, preferred, reasoning, True, None, prompt_tokens, completion_tokens
    )


def _invalid(
    order: Order,
    reason: InvalidReason,
    reasoning: str,
    prompt_tokens: int,
    completion_tokens: int,
    detail: str,
) -> PairwiseOrderJudgement:
    return PairwiseOrderJudgement(
        order, 0.5, None, reasoning, False, reason, prompt_tokens, completion_tokens, detail
    )
