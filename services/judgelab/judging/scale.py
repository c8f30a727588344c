"""The integer score scale of a pointwise judge, and how its scores are written and scored.

How multi-digit scales are read without double counting
------------------------------------------------------
A non-reasoning judge's score is read from the probabilities the model puts on each
score string right after the assistant prefix ``"Score: "``. On a scale where one score is
a prefix of another (0-10: ``"1"`` and ``"10"``), the probability of the text ``"1"`` also
contains every continuation ``"10"``, ``"11"``, ... so reading it as "the score is 1"
double-counts the mass of 10. This module makes every scored string self-terminating:

* Prefix-free scales (0-9, 1-5, 10-99, ...): the answer is ``Score: <n>`` and the candidates are
  the bare numbers; no candidate can continue into another, and on 0-9 each is one token
  (one forward pass).
* Other scales (0-10, 1-10, 0-100): the answer is ``Score: <n>/<max>`` and the candidates are
  ``"<n>/"``: the ``/`` ends the number, so ``"1/"`` and ``"10/"`` are disjoint events whatever
  the tokenizer does with digits. The engine teacher-forces every token of a candidate
  (the transformers engine does this exactly), so P("1/") = P("1") P("/" | "1") and
  P("10/") = P("1") P("0" | "1") P("/" | "10"). Mass the model puts elsewhere (``"1"`` followed
  by a newline, say) is simply not counted and shows up as a lower ``mass``.

The same written form is the final line a reasoning judge must end with, so gold and proxy
judges on one scale share one answer format (and SFT targets can be built with :meth:`answer`).
"""

from __future__ import annotations

from dataclasses import dataclass

SCORE_LABEL = "Score:"
#: Assistant prefix of a non-reasoning pointwise judge on engines that can prefill.
SCORE_PREFIX = SCORE_LABEL + " "
#: Marks the end of the number on scales where one score is a prefix of another.
TERMINATOR = "/"


@dataclass(frozen=True)
class Scale:
    """Inclusive integer range ``min..max`` with ``0 <= min < max``."""

    min: int = 0
    max: int = 9

    def __post_init__(self) -> None:
        if self.min < 0:
            raise ValueError(f"scale.min must be >= 0, got {self.min}")
        if self.min >= self.max:
            raise ValueError(f"scale.min ({self.min}) must be less than scale.max ({self.max})")

    @property
    def values(self) -> tuple[int, ...]:
        return tuple(range(self.min, self.max + 1))

    @property
    def prefix_free(self) -> bool:
        """True when no score's digits start another score's (0-9 yes; 0-10 no: "1", "10")."""
        written = [str(v) for v in self.values]
        return not any(b != a and b.startswith(a) for a in written for b in written)

    @property
    def suffix(self) -> str:
        """What follows the number in a written score: ``""`` or ``"/<max>"``."""
        return "" if self.prefix_free else f"{TERMINATOR}{self.max}"

    @property
    def single_token_digits(self) -> bool:
        """Every score is one digit (0-9): a generated score sits in one token position."""
        return self.max <= 9

    def answer(self, value: int) -> str:
        """The full final line for ``value``, e.g. ``Score: 7`` or ``Score: 7/10``."""
        return f"{SCORE_PREFIX}{value}{self.suffix}"

    def answer_format(self, with_label: bool = True) -> str:
        """The format shown to the judge, e.g. ``Score: <n>``; ``<n>`` alone without the label."""
        written = f"<n>{self.suffix}"
        return f"{SCORE_PREFIX}{written}" if with_label else written

    def candidates(self) -> tuple[str, ...]:
        """Strings scored after the prefix, one per value in ascending order."""
        end = "" if self.prefix_free else TERMINATOR
        return tuple(f"{v}{end}" for v in self.values)

    def value_of(self, candidate: str) -> int:
        return int(candidate.removesuffix(TERMINATOR))

    def __contains__(self, value: object) -> bool:
        return isinstance(value, int) and self.min <= value <= self.max
