"""Pairwise judge: both orders averaged, position consistency, GRPO group win rates."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import pytest

from judgelab.engines.base import (
    CandidateScores,
    Conversation,
    Engine,
    EngineError,
    Generation,
    SamplingParams,
)
from judgelab.judging import Group, JudgeConfig, Pair, PairwiseJudge, position_consistency_rate

if TYPE_CHECKING:
    from judgelab.engines.transformers_engine import TransformersEngine

DIRECT = JudgeConfig(name="pair", model="fake", protocol="pairwise")
REASONING = replace(DIRECT, reasoning=True, reasoning_budget=64)


def shown(user: str) -> tuple[str, str]:
    """The responses in the prompt's A and B slots."""
    first = re.search(r"Assistant A's Response\]\n(.*)\n\[The End of Assistant A", user, re.S)
    second = re.search(r"Assistant B's Response\]\n(.*)\n\[The End of Assistant B", user, re.S)
    assert first is not None and second is not None
    return first[1], second[1]


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


class BiasedJudgeEngine(Engine):
    """P(slot A better) = sigmoid(quality(A) - quality(B) + bias): a judge that favours the
    first slot. Quality is the response's length; BOOM fails the call. Generation writes the
    verdict of the same model as ``Preferred: A|B`` with those probabilities at the letter."""

    name = "biased"

    def __init__(self, bias: float, quality: Callable[[str], float] = len) -> None:
        self.bias = bias
        self.quality = quality
        self.calls: list[int] = []
        self.prefixes: list[str] = []

    def p_first(self, user: str) -> float:
        first, second = shown(user)
        if "BOOM" in first + second:
            raise EngineError("judge server returned 503")
        return sigmoid(self.quality(first) - self.quality(second) + self.bias)

    def score_candidates(
        self,
        conversations: Sequence[Conversation],
        candidates: Sequence[str],
        assistant_prefix: str = "",
    ) -> list[CandidateScores]:
        assert tuple(candidates) == ("A", "B")
        self.calls.append(len(conversations))
        self.prefixes.append(assistant_prefix)
        ps = [self.p_first(c[-1].content) for c in conversations]
        return [CandidateScores(("A", "B"), {"A": math.log(p), "B": math.log(1 - p)}) for p in ps]

    def generate(
        self, conversations: Sequence[Conversation], params: SamplingParams
    ) -> list[Generation]:
        self.calls.append(len(conversations))
        return [self._verdict(self.p_first(c[-1].content)) for c in conversations]

    def _verdict(self, p: float) -> Generation:
        letter = "A" if p >= 0.5 else "B"
        alts = {"A": math.log(p), "B": math.log(1 - p)}
        texts = ["Both", " answer", ".\n", "Preferred", ":", " ", letter]
        logprobs = [-0.1] * 6 + [alts[letter]]
        tops = [{t: -0.1} for t in texts[:-1]] + [alts]
        return Generation("".join(texts), [], logprobs, "stop", 50, tops)

    def count_tokens(self, conversation: Conversation) -> int:
        return 7

    @property
    def context_length(self) -> int:
        return 10_000


@pytest.mark.parametrize("config", [DIRECT, REASONING], ids=["direct", "reasoning"])
def test_averaging_both_orders_cancels_position_bias(config: JudgeConfig) -> None:
    engine = BiasedJudgeEngine(bias=1.0)
    judge = PairwiseJudge(engine, config)
    (equal,) = judge.judge([Pair("p", "q", "same", "also")])  # equal quality (length 4)
    assert engine.calls == [2]  # both orders in one batch
    first, swapped = equal.orders
    assert (first.order, swapped.order) == ("AB", "BA")
    assert first.p_a_preferred == pytest.approx(sigmoid(1.0))  # the bias alone
    assert swapped.p_a_preferred == pytest.approx(1 - sigmoid(1.0))
    assert equal.p_a_preferred == pytest.approx(0.5)
    assert equal.preferred == "tie"
    assert not equal.position_consistent
    (single,) = judge.judge([Pair("p", "q", "same", "also")], both_orders=False)
    assert single.p_a_preferred == pytest.approx(sigmoid(1.0))


def test_direct_judges_read_the_letters_after_the_prefix() -> None:
    engine = BiasedJudgeEngine(bias=0.0)
    (result,) = PairwiseJudge(engine, DIRECT).judge([Pair("p", "q", "longer one", "short")])
    assert engine.prefixes == ["Preferred: "]
    expected = sigmoid(len("longer one") - len("short"))
    assert result.p_a_preferred == pytest.approx(expected)
    assert (result.preferred, result.position_consistent, result.valid) == ("A", True, True)
    assert result.prompt_tokens == 14 and result.template_id == "pairwise-v1"


def test_position_consistency_rate_counts_pairs_whose_orders_agree() -> None:
    engine = BiasedJudgeEngine(bias=2.0)
    pairs = [
        Pair("clear", "q", "a much longer answer", "tiny"),  # quality gap 16 beats the bias
        Pair("close", "q", "abcde", "abcd"),  # gap 1 < bias 2: each order prefers slot A
        Pair("reverse", "q", "ab", "abcdefghij"),
    ]
    results = PairwiseJudge(engine, DIRECT).judge(pairs)
    assert [r.position_consistent for r in results] == [True, False, True]
    assert position_consistency_rate(results) == pytest.approx(2 / 3)
    assert [r.preferred for r in results] == ["A", "A", "B"]


def test_consistency_rate_needs_two_valid_orders() -> None:
    engine = BiasedJudgeEngine(bias=0.0)
    results = PairwiseJudge(engine, DIRECT).judge([Pair("p", "q", "a", "bb")], both_orders=False)
    assert results[0].position_consistent
    assert position_consistency_rate(results) is None


def test_engine_errors_are_invalid_pairs_not_exceptions() -> None:
    engine = BiasedJudgeEngine(bias=0.0)
    results = PairwiseJudge(engine, DIRECT).judge(
        [Pair("ok", "q", "aa", "b"), Pair("bad", "q", "BOOM", "b")]
    )
    assert [(r.valid, r.invalid_reason) for r in results] == [(True, None), (False, "engine_error")]
    bad = results[1]
    assert bad.p_a_preferred == 0.5 and bad.preferred is None and "503" in bad.detail
    assert all(order.invalid_reason == "engine_error" for order in bad.orders)


def test_reasoning_verdicts_are_mapped_back_to_the_responses() -> None:
    engine = BiasedJudgeEngine(bias=0.0)
    (result,) = PairwiseJudge(engine, REASONING).judge([Pair("p", "q", "x", "a longer answer")])
    first, swapped = result.orders
    # B is better: shown second it is "Preferred: B", shown first it is "Preferred: A".
    assert (first.preferred, swapped.preferred) == ("B", "B")
    assert result.preferred == "B" and result.position_consistent
    expected = 1 - sigmoid(len("a longer answer") - 1)
    assert result.p_a_preferred == pytest.approx(expected)
    assert first.reasoning == "Both answer."


@pytest.mark.parametrize("bias", [0.0, 1.5])
def test_group_win_rates_average_one_half_and_follow_quality(bias: float) -> None:
    engine = BiasedJudgeEngine(bias=bias, quality=lambda r: 0.3 * len(r))
    responses = ["a", "abc", "abcdefg", "ab", "abcdefghijk"]
    rates = PairwiseJudge(engine, DIRECT).group_win_rates("q", responses)
    g = len(responses)
    assert engine.calls == [g * (g - 1)]  # every ordered comparison in one call
    assert sum(rates) / g == pytest.approx(0.5)
    assert sorted(range(g), key=lambda i: rates[i]) == sorted(
        range(g), key=lambda i: len(responses[i])
    )

    # Response 0 against the rest, by hand: mean over j of the two-order average.
    def p(a: str, b: str) -> float:
        q = 0.3 * (len(a) - len(b))
        return (sigmoid(q + bias) + 1 - sigmoid(-q + bias)) / 2

    assert rates[0] == pytest.approx(sum(p("a", r) for r in responses[1:]) / (g - 1))


def test_group_win_rates_with_invalid_pairs_still_average_one_half() -> None:
    engine = BiasedJudgeEngine(bias=0.0)
    judge = PairwiseJudge(engine, DIRECT)
    (group,) = judge.judge_groups([Group("q", ["a", "BOOM", "abc"], id="g")])
    assert sum(group.win_rates) / 3 == pytest.approx(0.5)
    assert [p.valid for p in group.pairs] == [False, True, False]
    with pytest.raises(ValueError, match="at least 2"):
        judge.group_win_rates("q", ["only one"])


def test_group_win_rates_on_the_tiny_model(tiny_engine: TransformersEngine) -> None:
    judge = PairwiseJudge(tiny_engine, replace(DIRECT, model="tiny"))
    rates = judge.group_win_rates("Say hi.", ["hi", "hello {there}", "hey"])
    assert len(rates) == 3 and all(0 <= r <= 1 for r in rates)
    assert sum(rates) / 3 == pytest.approx(0.5)


def test_reference_guided_pairs_need_a_reference() -> None:
    judge = PairwiseJudge(BiasedJudgeEngine(0.0), replace(DIRECT, reference_guided=True))
    with pytest.raises(ValueError, match="'p'"):
        judge.judge([Pair("p", "q", "a", "b")])
    (result,) = judge.judge([Pair("p", "q", "a", "bb", reference="bb")])
    assert result.template_id == "pairwise-ref-v1" and result.valid
