"""The judge pool's Redis-stream mode: rollout groups in, scored groups out.

Rewards: a pointwise judge's expected score; a pairwise judge's mean win rate of each rollout
against the other G-1 (both orders). The same :class:`JudgePool` core as the gRPC service.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from concurrent.futures import Future
from contextlib import AbstractContextManager
from typing import Any

from judgelab.judge_pool.pool import JudgePool, gather
from judgelab.judging.pairwise import Group, group_pairs, win_rates
from judgelab.judging.pointwise import PointwiseJudge
from judgelab.judging.results import PairwiseJudgement, PointwiseJudgement
from judgelab.judging.samples import Sample
from judgelab.queues.consumer import Delivery, Output
from judgelab.queues.messages import RolloutGroup, ScoredGroup
from judgelab.queues.names import StreamNames
from judgelab.serving.errors import invalid
from judgelab.serving.stream_worker import Finish


class RolloutScorer:
    """A :class:`StreamHandler` that scores rollout groups with the pool's judges."""

    def __init__(self, pool: JudgePool, names: StreamNames, judges: set[str] | None = None):
        self.pool = pool
        self.names = names
        self.judges = judges  # None: any judge of the pool

    def held(self) -> AbstractContextManager[None]:
        """The stream worker submits one read's groups inside: one batch for all of them."""
        return self.pool.held()

    def parse(self, delivery: Delivery) -> tuple[str, RolloutGroup]:
        group = RolloutGroup.from_fields(delivery.fields)
        return group.group_id, group

    def submit(self, group: RolloutGroup) -> Finish:
        if self.judges is not None and group.judge not in self.judges:
            raise invalid("judge", "UNKNOWN_JUDGE", f"this worker does not serve {group.judge!r}")
        judge = self.pool.get(group.judge).judge
        if isinstance(judge, PointwiseJudge):
            return self._pointwise(group)
        return self._pairwise(group)

    def _pointwise(self, group: RolloutGroup) -> Finish:
        """A rollout too long for the judge's context is an invalid judgement (reward 0) and
        the rest of its group is scored: one runaway completion must not lose the group."""
        judge = self.pool.get(group.judge).judge
        assert isinstance(judge, PointwiseJudge)
        samples = [
            Sample(r.id, group.prompt, r.text, group.reference, group.rubric)
            for r in group.rollouts
        ]
        oversized = self.pool.oversized(group.judge, samples)
        fitting = [s for i, s in enumerate(samples) if i not in oversized]
        pending = self.pool.submit_score(group.judge, fitting) if fitting else []

        def finish() -> Sequence[Output]:
            scored = iter(gather(pending, None))
            judged = [
                judge.too_long(s.id, oversized[i]) if i in oversized else next(scored)
                for i, s in enumerate(samples)
            ]
            return self._scored(group, [j.expected for j in judged], judged)

        return finish

    def _pairwise(self, group: RolloutGroup) -> Finish:
        responses = [r.text for r in group.rollouts]
        pairs, ij = group_pairs(
            Group(group.prompt, responses, group.reference, group.group_id, group.rubric)
        )
        pending: list[Future[PairwiseJudgement]] = self.pool.submit_pairwise(
            group.judge, pairs, both_orders=True
        )

        def finish() -> Sequence[Output]:
            judged = gather(pending, None)
            rates = win_rates(len(responses), ij, iter(judged))
            per_rollout = [_pairs_of(k, ij, judged) for k in range(len(responses))]
            return self._scored(group, list(rates.win_rates), per_rollout)

        return finish

    def _scored(
        self, group: RolloutGroup, rewards: list[float], judged: Sequence[Any]
    ) -> Sequence[Output]:
        scored = ScoredGroup(
            group_id=group.group_id,
            arm=group.arm,
            judge=group.judge,
            policy_version=group.policy_version,
            rollout_ids=[r.id for r in group.rollouts],
            rewards=rewards,
            valid=[_valid(j) for j in judged],
            judgements=[_as_json(j) for j in judged],
        )
        return [(self.names.scored(group.arm), scored.to_fields())]


def _pairs_of(
    k: int, ij: list[tuple[int, int]], judged: Sequence[PairwiseJudgement]
) -> list[PairwiseJudgement]:
    return [j for (a, b), j in zip(ij, judged, strict=True) if k in (a, b)]


def _valid(judged: PointwiseJudgement | list[PairwiseJudgement]) -> bool:
    if isinstance(judged, list):
        return all(j.valid for j in judged)
    return judged.valid


def _as_json(judged: PointwiseJudgement | list[PairwiseJudgement]) -> dict[str, Any]:
    if isinstance(judged, list):
        return {"pairs": [_summary(j) for j in judged]}
    return _summary(judged)


def _summary(judged: PointwiseJudgement | PairwiseJudgement) -> dict[str, Any]:
    return dataclasses.asdict(judged)

