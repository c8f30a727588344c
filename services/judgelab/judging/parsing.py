"""Strict parsing of a reasoning judge's output: only its last non-empty line is the verdict.

The last non-empty line, stripped of surrounding whitespace, must match the format the
template asked for, exactly: ``Score: 7`` (``Score: 7/10`` on scales that need the
terminator, see ``scale``) or ``Preferred: A``. Nothing else is searched: a verdict written
earlier in the reasoning, or quoted from the response under judgement, never counts.

Failures, checked in this order:

* ``empty_output``: no text at all (and the generation was not cut short);
* ``truncated``: the generation hit its token limit and the last line is not a verdict;
* ``unparseable``: the last line is not in the format (markdown, extra words, a wrong
  denominator, a decimal, ...);
* ``out_of_range``: the format is right but the value is not on the scale / not A or B.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from judgelab.judging.results import InvalidReason
from judgelab.judging.scale import SCORE_LABEL, TERMINATOR, Scale

PREFERENCE_LABEL = "Preferred:"
#: Assistant prefix of a non-reasoning pairwise judge on engines that can prefill.
PREFERENCE_PREFIX = PREFERENCE_LABEL + " "
PREFERENCE_OPTIONS = ("A", "B")

_SCORE = re.compile(re.escape(SCORE_LABEL) + r"[ \t]*(-?\d+)")
_SCORE_OF = re.compile(
    re.escape(SCORE_LABEL) + r"[ \t]*(-?\d+)[ \t]*" + re.escape(TERMINATOR) + r"[ \t]*(\d+)"
)
_PREFERENCE = re.compile(re.escape(PREFERENCE_LABEL) + r"[ \t]*(\S+)")


@dataclass(frozen=True)
class Parsed:
    """A verdict read from the final line, or why there is none.

    ``verdict`` is the verdict's text ("7", "A") and ``line[:verdict_end]`` the final line up to
    its end (used to find the verdict's token); ``reasoning`` is the text before the final
    line, or the whole text when there is no verdict.
    """

    verdict: str | None
    invalid_reason: InvalidReason | None
    reasoning: str
    line: str = ""
    verdict_end: int = 0

    @property
    def valid(self) -> bool:
        return self.invalid_reason is None


#: Checks a final line: (a rejection, None), (None, the verdict's match) or (None, None).
_Check = Callable[[str], tuple[Parsed | None, re.Match[str] | None]]


def parse_score(text: str, scale: Scale, finish_reason: str) -> Parsed:
    def check(line: str) -> tuple[Parsed | None, re.Match[str] | None]:
        match = (_SCORE if scale.prefix_free else _SCORE_OF).fullmatch(line)
        if match is None or (not scale.prefix_free and int(match[2]) != scale.max):
            return None, None
        if int(match[1]) not in scale:
            return _invalid("out_of_range", text), None
        return None, match

    return _parse_final_line(text, finish_reason, check)


def parse_preference(text: str, finish_reason: str) -> Parsed:
    def check(line: str) -> tuple[Parsed | None, re.Match[str] | None]:
        match = _PREFERENCE.fullmatch(line)
        if match is None:
            return None, None
        if match[1] not in PREFERENCE_OPTIONS:
            return _invalid("out_of_range", text), None
        return None, match

    return _parse_final_line(text, finish_reason, check)


def _parse_final_line(text: str, finish_reason: str, check: _Check) -> Parsed:
    lines = [line.strip() for line in text.split("\n")]
    non_empty = [i for i, line in enumerate(lines) if line]
    cut_short = finish_reason == "length"
    if not non_empty:
        return _invalid("truncated" if cut_short else "empty_output", text)
    last = non_empty[-1]
    rejected, match = check(lines[last])
    if rejected is not None:
        return rejected
    if match is None:
        return _invalid("truncated" if cut_short else "unparseable", text)
    before = "\n".join(text.split("\n")[:last]).strip()
    return Parsed(match[1], None, before, lines[last], match.end(1))


def _invalid(reason: InvalidReason, text: str) -> Parsed:
    return Parsed(None, reason, text.strip())
