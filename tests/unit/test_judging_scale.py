"""Score scales, and scores read from the tiny model checked against manual forward passes."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import pytest

from judgelab.engines.base import ChatMessage
from judgelab.judging import JudgeConfig, PointwiseJudge, Sample, Scale
from judgelab.judging.prompting import JudgePrompt

if TYPE_CHECKING:
    from judgelab.engines.transformers_engine import TransformersEngine


def test_scale_rejects_bad_bounds_naming_the_field() -> None:
    with pytest.raises(ValueError, match="scale.min"):
        Scale(5, 5)
    with pytest.raises(ValueError, match="scale.min"):
        Scale(-1, 9)


@pytest.mark.parametrize(
    ("scale", "prefix_free", "candidates"),
    [
        (Scale(0, 9), True, ("0", "1", "2", "3", "4", "5", "6", "7", "8", "9")),
        (Scale(1, 5), True, ("1", "2", "3", "4", "5")),
        (Scale(8, 12), True, ("8", "9", "10", "11", "12")),
        (Scale(0, 10), False, tuple(f"{v}/" for v in range(11))),
        (Scale(1, 10), False, tuple(f"{v}/" for v in range(1, 11))),
    ],
)
def test_candidates_are_prefix_free(
    scale: Scale, prefix_free: bool, candidates: tuple[str, ...]
) -> None:
    assert scale.prefix_free is prefix_free
    assert scale.candidates() == candidates
    assert [scale.value_of(c) for c in candidates] == list(scale.values)
    assert not any(a != b and b.startswith(a) for a in candidates for b in candidates)


def test_written_answers_carry_the_terminator_only_where_needed() -> None:
    assert Scale(0, 9).answer(7) == "Score: 7"
    assert Scale(0, 10).answer(7) == "Score: 7/10"
    assert Scale(0, 10).answer_format(with_label=False) == "<n>/10"


def _judge_conversation(judge: PointwiseJudge, sample: Sample) -> list[ChatMessage]:
    prompt: JudgePrompt = judge.prompt
    return prompt.render({"prompt": str(sample.prompt), "response": sample.response})


def _teacher_forced(
    engine: TransformersEngine, conversation: list[ChatMessage], prefix: str, text: str
) -> tuple[float, int]:
    """log P(text | prompt + prefix) by one plain forward pass, and how many tokens text took."""
    import torch

    from judgelab.engines.chat import render_prompt

    prompt = render_prompt(engine.tokenizer, conversation, prefix)
    prompt_ids = engine.tokenizer(prompt, add_special_tokens=False)["input_ids"]
    full_ids = engine.tokenizer(prompt + text, add_special_tokens=False)["input_ids"]
    assert full_ids[: len(prompt_ids)] == prompt_ids
    with torch.no_grad():
        logits = engine.model(torch.tensor([full_ids])).logits[0]
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    new = full_ids[len(prompt_ids) :]
    total = sum(float(logprobs[len(prompt_ids) - 1 + k, t]) for k, t in enumerate(new))
    return total, len(new)


SAMPLE = Sample("s", "Name a prime number.", "Seven {7} is prime.")


def test_single_digit_scale_is_the_next_token_distribution(tiny_engine: TransformersEngine) -> None:
    judge = PointwiseJudge(tiny_engine, JudgeConfig(name="j", model="tiny"))
    (result,) = judge.judge([SAMPLE])
    conversation = _judge_conversation(judge, SAMPLE)
    manual = {v: _teacher_forced(tiny_engine, conversation, "Score: ", str(v)) for v in range(10)}
    assert all(n == 1 for _, n in manual.values())
    weights = {v: math.exp(lp) for v, (lp, _) in manual.items()}
    total = sum(weights.values())
    assert result.valid
    assert result.mass == pytest.approx(total, rel=1e-4)
    for value, prob in result.distribution:
        assert prob == pytest.approx(weights[value] / total, rel=1e-4, abs=1e-9)
    expected = sum(v * w for v, w in weights.items()) / total
    assert result.expected == pytest.approx(expected, rel=1e-4)
    assert result.argmax == max(weights, key=lambda v: weights[v])


def test_zero_to_ten_scores_one_and_ten_without_double_counting(
    tiny_engine: TransformersEngine,
) -> None:
    judge = PointwiseJudge(tiny_engine, JudgeConfig(name="j", model="tiny", scale=Scale(0, 10)))
    (result,) = judge.judge([SAMPLE])
    conversation = _judge_conversation(judge, SAMPLE)
    manual = {v: _teacher_forced(tiny_engine, conversation, "Score: ", f"{v}/") for v in range(11)}
    assert manual[1][1] == 2 and manual[10][1] == 3  # "1" "/" and "1" "0" "/"
    weights = {v: math.exp(lp) for v, (lp, _) in manual.items()}
    total = sum(weights.values())
    probs = dict(result.distribution)
    assert result.valid and sorted(probs) == list(range(11))
    assert result.mass == pytest.approx(total, rel=1e-4)
    for value in (1, 10):
        assert probs[value] == pytest.approx(weights[value] / total, rel=1e-4)
    # "1/" and "10/" are disjoint continuations of "1": together they cannot exceed P("1").
    p_first_one = math.exp(_teacher_forced(tiny_engine, conversation, "Score: ", "1")[0])
    assert weights[1] + weights[10] <= p_first_one * (1 + 1e-6)
    assert result.expected == pytest.approx(
        sum(v * w for v, w in weights.items()) / total, rel=1e-4
    )
