"""Shared helpers: where a match sits (code, quotation marks, the prompt) and fast matching.

Detectors skip matches that the response quotes or shows as code, because quoting a pattern
(explaining a refusal message, showing a judge's output format) is not using it. Code and quote
spans are found once per text (cached), so checking many candidates stays linear.

Speed: Python's ``re`` tries a case-insensitive alternation at every position, so the main
patterns are written in lower case and run without ``re.IGNORECASE`` on ``lowered(text)``
(about twice as fast; cached, as ``detect`` lowers each text for five detectors), behind
``mentions_any`` gates that skip texts without their keywords.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from functools import lru_cache

_CODE = re.compile(r"```.*?(?:```|\Z)|`[^`\n]*`", re.DOTALL)
_QUOTE_OR_NEWLINE = re.compile(r'["“”«»\n]')
_ASCII_LOWER = {c: c + 32 for c in range(ord("A"), ord("Z") + 1)}
Spans = tuple[tuple[int, ...], tuple[int, ...]]


@lru_cache(maxsize=8)
def lowered(text: str) -> str:
    """``text`` in lower case with every character at its offset, so spans carry over."""
    low = text.lower()
    return low if len(low) == len(text) else text.translate(_ASCII_LOWER)


def quoted(text: str, pos: int) -> bool:
    """True when ``pos`` lies in a code span or block, or between double quotes on its line."""
    return _inside(_code_spans(text), pos) or _inside(_quote_spans(text), pos)


@lru_cache(maxsize=8)
def _code_spans(text: str) -> Spans:
    if "`" not in text:
        return (), ()
    found = [m.span() for m in _CODE.finditer(text)]
    return tuple(s for s, _ in found), tuple(e for _, e in found)


@lru_cache(maxsize=8)
def _quote_spans(text: str) -> Spans:
    """From just after an opening quote to just after its closing one (or the line's end)."""
    starts: list[int] = []
    ends: list[int] = []
    for match in _QUOTE_OR_NEWLINE.finditer(text):
        closes = len(starts) > len(ends)
        if match.group() != "\n":
            (ends if closes else starts).append(match.end())
        elif closes:
            ends.append(match.start())
    if len(starts) > len(ends):
        ends.append(len(text))
    return tuple(starts), tuple(ends)


def _inside(spans: Spans, pos: int) -> bool:
    starts, ends = spans
    i = bisect_right(starts, pos) - 1
    return i >= 0 and pos < ends[i]


def paragraph_window(text: str, start: int, end: int, reach: int) -> tuple[int, int]:
    """``text[start:end]`` widened by up to ``reach`` characters each way, within its paragraph."""
    lo, hi = max(0, start - reach), min(len(text), end + reach)
    before = text.rfind("\n\n", lo, start)
    after = text.find("\n\n", end, hi)
    return (lo if before < 0 else before + 2), (hi if after < 0 else after)


def prompt_mentions(prompt: str | None, pattern: re.Pattern[str]) -> bool:
    return prompt is not None and pattern.search(prompt) is not None


def mentions_any(low: str, needles: tuple[str, ...]) -> bool:
    """A cheap gate before a costly regex: does the lower-cased text contain any needle?"""
    return any(needle in low for needle in needles)
