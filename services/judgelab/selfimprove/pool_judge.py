"""The ``external-judge`` arm's judge: a pairwise judge of the judge pool, reached over gRPC.

Candidates are compared as the self-judge compares them (every unordered pair, shown in both
orders when ``both_orders``; a candidate's score is its mean P(win)), but each comparison is a
``JudgePool.ScorePairwise`` call to the named judge, whose ``prob_a_preferred`` per order comes
from that judge's verdict probabilities. The reference goes with each pair when the judge is
reference-guided. The pool refuses blank texts, so a pair with a blank candidate is not sent:
the blank one loses (both blank: an invalid comparison, half a win each). A pool that cannot be
reached or refuses the request fails the arm with an error naming the judge and the address
(every call has a deadline: never a hang).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from judgelab.client.channel import ChannelConfig, access_hint, config_from_env
from judgelab.client.errors import ApiError
from judgelab.client.sync import JudgePoolClient
from judgelab.client.types import Message, OrderResult, Pair, PairwiseResult
from judgelab.judging.results import (
    InvalidReason,
    Order,
    PairwiseJudgement,
    PairwiseOrderJudgement,
    Stamp,
    Verdict,
)
from judgelab.judging.samples import Pair as JudgedPair
from judgelab.selfimprove.prompts import require_references
from judgelab.selfimprove.sampling import Candidates
from judgelab.selfimprove.self_judge import GROUPS_PER_CALL, JudgedCandidates, judge_candidates

#: Pairs per ScorePairwise request: well under a pool judge's queue bound (``max_queue``).
PAIRS_PER_REQUEST = 64
#: Deadline of one request, retries included: a CPU judge takes seconds per comparison.
REQUEST_TIMEOUT_S = 900.0


BLANK = "a blank candidate: decided without the judge"


class JudgePoolFailed(RuntimeError):
    """The judge pool could not judge the arm's pairs."""


class PoolJudge:
    """Scores candidates with judge ``judge`` of the judge pool at ``address``."""

    def __init__(
        self,
        address: str | ChannelConfig,
        judge: str,
        *,
        reference_guided: bool,
        both_orders: bool = True,
        experiment: str = "",
        timeout_s: float = REQUEST_TIMEOUT_S,
        groups_per_call: int = GROUPS_PER_CALL,
    ) -> None:
        self.config = config_from_env(address)
        self.name = judge
        self.reference_guided = reference_guided
        self.both_orders = both_orders
        self.experiment = experiment
        self.groups_per_call = groups_per_call
        self.client = JudgePoolClient(self.config, timeout_s=timeout_s)

    def close(self) -> None:
        self.client.close()

    def score(self, batch: Sequence[Candidates], arm: str) -> list[JudgedCandidates]:
        """Every prompt's candidates scored through the pool (see the module doc)."""
        if self.reference_guided:
            require_references([c.row for c in batch], arm)
        return judge_candidates(batch, self._judge_pairs, self.groups_per_call)

    def _judge_pairs(self, pairs: list[JudgedPair]) -> list[PairwiseJudgement]:
        sent = [p for p in pairs if p.response_a.strip() and p.response_b.strip()]
        judged = {j.pair_id: j for j in self._ask_pool(sent)}
        return [judged[p.id] if p.id in judged else self._blank(p) for p in pairs]

    def _ask_pool(self, pairs: list[JudgedPair]) -> list[PairwiseJudgement]:
        judged: list[PairwiseJudgement] = []
        for start in range(0, len(pairs), PAIRS_PER_REQUEST):
            chunk = pairs[start : start + PAIRS_PER_REQUEST]
            try:
                results = self.client.score_pairwise(
                    self.name,
                    [self._to_client(p) for p in chunk],
                    both_orders=self.both_orders,
                    experiment=self.experiment,
                )
            except ApiError as error:
                hint = access_hint(error.code, self.config)
                raise JudgePoolFailed(
                    f"judge {self.name!r} of the judge pool at {self.config.address} failed: "
                    f"{error}{hint}"
                ) from error
            by_id = {r.pair_id: r for r in results}
            missing = [p.id for p in chunk if p.id not in by_id]
            if missing:
                raise JudgePoolFailed(
                    f"judge {self.name!r} of the judge pool at {self.config.address} returned no "
                    f"result for {len(missing)} of {len(chunk)} pairs (first: {missing[0]})"
                )
            judged += [judgement_of(by_id[p.id]) for p in chunk]
        return judged

    def _blank(self, pair: JudgedPair) -> PairwiseJudgement:
        """A pair with a blank candidate, decided without the judge."""
        a, b = bool(pair.response_a.strip()), bool(pair.response_b.strip())
        orders: tuple[Order, ...] = ("AB", "BA") if self.both_orders else ("AB",)
        stamp = Stamp(self.name, "", "", "")
        if not a and not b:
            shown = tuple(
                PairwiseOrderJudgement(o, 0.5, None, "", False, "empty_output", 0, 0)
                for o in orders
            )
            return PairwiseJudgement(pair.id, stamp, 0.5, None, shown, False, False,
                                     "empty_output", 0.0, BLANK)  # fmt: skip
        p_a = 1.0 if a else 0.0
        verdict: Verdict = "A" if a else "B"
        decided = tuple(
            PairwiseOrderJudgement(o, p_a, verdict, "", True, None, 0, 0) for o in orders
        )
        return PairwiseJudgement(pair.id, stamp, p_a, verdict, decided, True, True, None, 0.0,
                                 BLANK)  # fmt: skip

    def _to_client(self, pair: JudgedPair) -> Pair:
        prompt = pair.prompt
        shown = prompt if isinstance(prompt, str) else [Message(m.role, m.content) for m in prompt]
        reference = pair.reference if self.reference_guided else None
        return Pair(pair.id, shown, pair.response_a, pair.response_b, reference=reference)


def judgement_of(result: PairwiseResult) -> PairwiseJudgement:
    """The pool's answer as the judgement the self-judge would have made."""
    stamp = Stamp(result.judge, result.template_id, result.template_hash, result.judge_config_hash)
    return PairwiseJudgement(
        pair_id=result.pair_id,
        stamp=stamp,
        p_a_preferred=result.prob_a_preferred if result.valid else 0.5,
        preferred=result.preferred,
        orders=tuple(_order_of(order) for order in result.orders),
        position_consistent=result.position_consistent,
        valid=result.valid,
        invalid_reason=_reason(result.invalid_reason),
        latency_s=result.latency_s,
    )


def _order_of(order: OrderResult) -> PairwiseOrderJudgement:
    return PairwiseOrderJudgement(
        order=order.order,
        p_a_preferred=order.prob_a_preferred,
        preferred=order.preferred,
        reasoning=order.reasoning,
        valid=order.valid,
        invalid_reason=_reason(order.invalid_reason),
        prompt_tokens=order.tokens_in,
        completion_tokens=order.tokens_out,
    )


def _reason(reason: str) -> InvalidReason | None:
    return cast(InvalidReason, reason) if reason else None
