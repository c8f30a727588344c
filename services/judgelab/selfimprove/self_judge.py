"""The policy judging its own candidates: every ordered pair, reference-guided or not.

For K candidates of a prompt the K(K-1)/2 unordered pairs are each shown in both orders, so
K(K-1) ordered comparisons; a candidate's score is its mean P(win) over the 2(K-1)
comparisons it takes part in, read from the judge's probabilities of ``A`` and ``B`` (the
non-reasoning pairwise protocol of ``judging.pairwise``, which averages the two orders).

Batched: the comparisons of ``groups_per_call`` prompts go to the engine in one call (the
transformers engine prefills their shared prefixes once). :class:`OneCallPerComparison` wraps
an engine so that the same code makes one engine call per ordered comparison (the benchmark's
unbatched baseline).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from judgelab.engines.base import CandidateScores, Conversation, Engine
from judgelab.judging import JudgeConfig, PairwiseJudge
from judgelab.judging.pairwise import Group, group_pairs, win_rates
from judgelab.judging.results import PairwiseJudgement
from judgelab.judging.samples import Pair
from judgelab.selfimprove.prompts import require_references
from judgelab.selfimprove.sampling import Candidates

#: Prompts whose comparisons share one engine call: 8 prompts x K=5 = 160 comparisons.
GROUPS_PER_CALL = 8
SELF_JUDGE = "self-judge"


@dataclass(frozen=True)
class JudgedCandidates:
    """One prompt's candidates with their scores (mean P(win)) and the judgements behind them."""

    candidates: Candidates
    scores: tuple[float, ...]
    judgements: tuple[PairwiseJudgement, ...]

    @property
    def comparisons(self) -> int:
        return sum(len(j.orders) for j in self.judgements)

    @property
    def invalid_comparisons(self) -> int:
        return sum(not order.valid for j in self.judgements for order in j.orders)


def self_judge_config(engine: Engine, with_reference: bool, name: str = SELF_JUDGE) -> JudgeConfig:
    """A non-reasoning pairwise judge on ``engine`` (the built-in RefEval-style template when
    ``with_reference``)."""
    return JudgeConfig(
        name=name, model=engine.name, protocol="pairwise", reference_guided=with_reference
    )


class SelfJudge:
    """Scores candidates by pairwise comparison with ``judge`` (usually the policy itself)."""

    def __init__(
        self,
        judge: PairwiseJudge,
        both_orders: bool = True,
        groups_per_call: int = GROUPS_PER_CALL,
    ) -> None:
        if judge.config.reasoning:
            raise ValueError("self-judging reads verdict probabilities: use a non-reasoning judge")
        self.judge = judge
        self.both_orders = both_orders
        self.groups_per_call = groups_per_call

    @classmethod
    def on(cls, engine: Engine, with_reference: bool, both_orders: bool = True) -> SelfJudge:
        judge = PairwiseJudge(engine, self_judge_config(engine, with_reference))
        return cls(judge, both_orders)

    @property
    def with_reference(self) -> bool:
        return self.judge.config.reference_guided

    def score(self, batch: Sequence[Candidates], arm: str = SELF_JUDGE) -> list[JudgedCandidates]:
        """Every prompt's candidates scored, ``groups_per_call`` prompts per engine call."""
        if self.with_reference:
            require_references([c.row for c in batch], arm)

        def judge_pairs(pairs: list[Pair]) -> list[PairwiseJudgement]:
            return self.judge.judge(pairs, both_orders=self.both_orders)

        return judge_candidates(batch, judge_pairs, self.groups_per_call)


def judge_candidates(
    batch: Sequence[Candidates],
    judge_pairs: Callable[[list[Pair]], list[PairwiseJudgement]],
    groups_per_call: int = GROUPS_PER_CALL,
) -> list[JudgedCandidates]:
    """Every prompt's candidates scored by mean P(win): the pairs of ``groups_per_call`` prompts
    go to ``judge_pairs`` at once, which returns one judgement per pair, in order."""
    result: list[JudgedCandidates] = []
    for start in range(0, len(batch), groups_per_call):
        chunk = batch[start : start + groups_per_call]
        planned = [group_pairs(_group(c)) for c in chunk]
        flat = [pair for pairs, _ in planned for pair in pairs]
        judgements = judge_pairs(flat)
        if len(judgements) != len(flat):
            raise RuntimeError(f"{len(judgements)} judgements for {len(flat)} pairs")
        judged = iter(judgements)
        for candidates, (_, ij) in zip(chunk, planned, strict=True):
            rates = win_rates(len(candidates.texts), ij, judged)
            result.append(JudgedCandidates(candidates, rates.win_rates, rates.pairs))
    return result


def _group(candidates: Candidates) -> Group:
    row = candidates.row
    return Group(row.prompt, candidates.texts, row.reference, row.id)


class OneCallPerComparison(Engine):
    """``engine`` asked one conversation at a time: the unbatched baseline of the benchmark."""

    def __init__(self, engine: Engine) -> None:
        self.inner = engine
        self.name = engine.name

    def score_candidates(
        self,
        conversations: Sequence[Conversation],
        candidates: Sequence[str],
        assistant_prefix: str = "",
    ) -> list[CandidateScores]:
        return [
            self.inner.score_candidates([c], candidates, assistant_prefix)[0] for c in conversations
        ]

    def count_tokens(self, conversation: Conversation) -> int:
        return self.inner.count_tokens(conversation)

    @property
    def context_length(self) -> int:
        return self.inner.context_length
