"""Strict parsing of reasoning judges: the last non-empty line is the verdict, nothing else."""

from __future__ import annotations

import pytest

from judgelab.judging.parsing import parse_preference, parse_score
from judgelab.judging.scale import Scale

NINE, TEN = Scale(0, 9), Scale(0, 10)
# The response under judgement grades itself; a judge that quotes it must not be read as 9.
QUOTING = 'The response ends with "Score: 9" about itself; that is not my verdict.\n'


@pytest.mark.parametrize(
    ("text", "finish", "scale", "verdict", "reason"),
    [
        ("Good answer.\nScore: 7", "stop", NINE, "7", None),
        ("Good answer.\n  Score:7  \n\n", "stop", NINE, "7", None),
        (QUOTING + "It is mostly wrong.\nScore: 3", "stop", NINE, "3", None),
        (QUOTING + "It is mostly wrong.", "stop", NINE, None, "unparseable"),
        ("Score: 9\nThe response is fine.", "stop", NINE, None, "unparseable"),
        ("> Score: 9", "stop", NINE, None, "unparseable"),
        ("**Score: 7**", "stop", NINE, None, "unparseable"),
        ("Score: 7 out of 9", "stop", NINE, None, "unparseable"),
        ("Score: 7.5", "stop", NINE, None, "unparseable"),
        ("Score: 12", "stop", NINE, None, "out_of_range"),
        ("Score: -1", "stop", NINE, None, "out_of_range"),
        ("Score: 10/10", "stop", TEN, "10", None),
        ("Score: 1 / 10", "stop", TEN, "1", None),
        ("Score: 10", "stop", TEN, None, "unparseable"),
        ("Score: 7/9", "stop", TEN, None, "unparseable"),
        ("Score: 11/10", "stop", TEN, None, "out_of_range"),
        ("Let me think about this step by step. First", "length", NINE, None, "truncated"),
        ("Score: 4", "length", NINE, "4", None),
        ("", "stop", NINE, None, "empty_output"),
        (" \n\n ", "stop", NINE, None, "empty_output"),
        ("", "length", NINE, None, "truncated"),
        ("asdf qwerty", "stop", NINE, None, "unparseable"),
    ],
)
def test_score_parsing(
    text: str, finish: str, scale: Scale, verdict: str | None, reason: str | None
) -> None:
    parsed = parse_score(text, scale, finish)
    assert (parsed.verdict, parsed.invalid_reason) == (verdict, reason)
    assert parsed.valid is (reason is None)


def test_reasoning_is_the_text_before_the_final_line() -> None:
    parsed = parse_score(QUOTING + "It is mostly wrong.\nScore: 3\n", NINE, "stop")
    assert parsed.reasoning == QUOTING + "It is mostly wrong."
    assert parsed.line[: parsed.verdict_end] == "Score: 3"


@pytest.mark.parametrize(
    ("text", "finish", "verdict", "reason"),
    [
        ("A is more accurate.\nPreferred: A", "stop", "A", None),
        ("Preferred:B", "stop", "B", None),
        ('B writes "Preferred: B" to sway me.\nA is right.\nPreferred: A', "stop", "A", None),
        ("Preferred: A\nOn reflection both are poor.", "stop", None, "unparseable"),
        ("Preferred: C", "stop", None, "out_of_range"),
        ("Preferred: tie", "stop", None, "out_of_range"),
        ("Preferred: A and B", "stop", None, "unparseable"),
        ("Response A is", "length", None, "truncated"),
        ("", "stop", None, "empty_output"),
    ],
)
def test_preference_parsing(
    text: str, finish: str, verdict: str | None, reason: str | None
) -> None:
    parsed = parse_preference(text, finish)
    assert (parsed.verdict, parsed.invalid_reason) == (verdict, reason)
