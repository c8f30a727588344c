"""Gold labels for samples, from any of three gold judges behind one small interface.

* :class:`GrpcGold`: the gold annotator service (``AnnotateStream``), with its durable cache.
* :class:`InProcessGold`: an annotator object in this process (the service's core, built by
  the caller: units never import a service), with whatever cache it was given.
* :class:`DirectGold`: the gold judge itself from the spec, no cache.

A sample the annotator refuses as too long for the gold model's context becomes an invalid
label (``too_long``), not a failed unit; any other refusal is a bug and raises.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from judgelab.judging import PointwiseJudge, PointwiseJudgement, Sample, Stamp
from judgelab.serving.errors import InvalidArgument

#: Samples per request to an annotator; it batches across requests by itself.
CHUNK = 16
TOO_LONG = "TOO_LONG"


class GoldError(RuntimeError):
    """The gold annotator failed in a way a retry of the unit may fix (or a bug)."""


@dataclass(frozen=True)
class GoldLabel:
    """One gold judgement as the Annotate outputs keep it."""

    sample_id: str
    score: int | None  # the label (spec.gold.label: rounded expected or argmax); None if invalid
    expected: float | None
    distribution: tuple[tuple[int, float], ...]
    reasoning: str
    valid: bool
    invalid_reason: str | None
    stamp: Stamp | None
    cached: bool = False
    detail: str = ""

    @classmethod
    def of(cls, judgement: PointwiseJudgement, cached: bool) -> GoldLabel:
        valid = judgement.valid
        return cls(
            sample_id=judgement.sample_id,
            score=judgement.argmax if valid else None,
            expected=judgement.expected if valid else None,
            distribution=judgement.distribution,
            reasoning=judgement.reasoning,
            valid=valid,
            invalid_reason=None if valid else (judgement.invalid_reason or "invalid"),
            stamp=judgement.stamp,
            cached=cached,
            detail=judgement.detail,
        )

    def labelled(self, rule: str, scale_min: int, scale_max: int) -> GoldLabel:
        """This label with ``score`` by ``rule``: ``expected`` (rounded half up, on the scale)
        or ``argmax`` (as judged)."""
        if rule == "argmax" or self.expected is None:
            return self
        rounded = min(max(math.floor(self.expected + 0.5), scale_min), scale_max)
        return dataclasses.replace(self, score=rounded)

    @property
    def argmax(self) -> int | None:
        """The most likely score of the gold distribution (None when invalid or unknown)."""
        if not self.valid or not self.distribution:
            return None
        return max(self.distribution, key=lambda pair: pair[1])[0]

    @classmethod
    def refused(cls, sample_id: str, reason: str, detail: str) -> GoldLabel:
        """A sample the gold judge never saw (e.g. an empty response, too long a prompt)."""
        return cls(sample_id, None, None, (), "", False, reason, None, False, detail)


class GoldLabeller(Protocol):
    """Labels samples; yields one label per sample, in any order (match by ``sample_id``)."""

    def label(self, samples: Sequence[Sample]) -> Iterator[GoldLabel]: ...

    def close(self) -> None: ...


class AnnotationLike(Protocol):
    @property
    def judgement(self) -> PointwiseJudgement: ...

    @property
    def cached(self) -> bool: ...


class AnnotatorLike(Protocol):
    """What :class:`InProcessGold` needs: the gold annotator core's ``annotate``."""

    def annotate(self, samples: Sequence[Sample]) -> Sequence[AnnotationLike]: ...


class InProcessGold:
    """An annotator object in this process, asked a chunk at a time."""

    def __init__(self, annotator: AnnotatorLike, chunk: int = CHUNK) -> None:
        self.annotator = annotator
        self.chunk = chunk

    def label(self, samples: Sequence[Sample]) -> Iterator[GoldLabel]:
        for start in range(0, len(samples), self.chunk):
            yield from self._chunk(list(samples[start : start + self.chunk]))

    def close(self) -> None:
        """The caller owns the annotator."""

    def _chunk(self, chunk: list[Sample]) -> Iterator[GoldLabel]:
        while chunk:
            try:
                results = self.annotator.annotate(chunk)
            except InvalidArgument as error:
                problems = [(p.field, p.reason, p.message) for p in error.problems]
                refused = refusals(problems, chunk)
                yield from refused.values()
                chunk = [s for s in chunk if s.id not in refused]
                continue
            for result in results:
                yield GoldLabel.of(result.judgement, result.cached)
            return


class DirectGold:
    """The gold judge called directly, a chunk at a time; nothing is cached."""

    def __init__(self, judge: PointwiseJudge, chunk: int = CHUNK, owns_engine: bool = True):
        self.judge = judge
        self.chunk = chunk
        self.owns_engine = owns_engine

    def label(self, samples: Sequence[Sample]) -> Iterator[GoldLabel]:
        for start in range(0, len(samples), self.chunk):
            for judgement in self.judge.judge(samples[start : start + self.chunk]):
                yield GoldLabel.of(judgement, cached=False)

    def close(self) -> None:
        if self.owns_engine:
            self.judge.engine.close()


def refusals(
    problems: Sequence[tuple[str, str, str]], chunk: Sequence[Sample]
) -> dict[str, GoldLabel]:
    """Refused labels for the samples a TOO_LONG problem names (``samples[i].field``); raises
    GoldError when any problem is something else or names no sample of the chunk."""
    refused: dict[str, GoldLabel] = {}
    for field, reason, message in problems:
        index = sample_index(field)
        if reason != TOO_LONG or index is None or index >= len(chunk):
            raise GoldError(f"the gold annotator refused the request: {field}: {reason}: {message}")
        sample = chunk[index]
        refused[sample.id] = GoldLabel.refused(sample.id, "too_long", message)
    if not refused:
        raise GoldError("the gold annotator refused the request without naming a sample")
    return refused


def sample_index(field: str) -> int | None:
    head = field.split(".", 1)[0]
    if not (head.startswith("samples[") and head.endswith("]")):
        return None
    number = head[len("samples[") : -1]
    return int(number) if number.isdigit() else None
