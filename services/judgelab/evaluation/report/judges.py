"""``RUN/judges.json``: each proxy judge's agreement with gold on held-out data and its cost."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from judgelab.evaluation.report.jsonio import Fields, read_json

#: Agreement metrics a judge record may carry, in table order (all optional, null allowed).
AGREEMENT_METRICS = ("alpha_interval", "alpha_ordinal", "pearson", "spearman", "accuracy")


@dataclass(frozen=True)
class JudgeRecord:
    """One proxy judge: how well it agrees with gold, how often it fails, what it costs."""

    name: str
    protocol: str
    reasoning: bool | None
    agreement: dict[str, float | None]
    invalid_rate: float | None
    reasoning_tokens_mean: float | None
    seconds_per_judgement: float | None
    tokens_per_judgement: float | None

    @classmethod
    def from_json(cls, fields: Fields) -> JudgeRecord:
        protocol = fields.text("protocol", required=False) or "pointwise"
        if protocol not in ("pointwise", "pairwise"):
            raise fields.fail("protocol", f"must be pointwise or pairwise, got {protocol!r}")
        reasoning = fields.data.get("reasoning")
        if reasoning is not None and not isinstance(reasoning, bool):
            raise fields.fail("reasoning", f"expected true, false or null, got {reasoning!r}")
        agreement = fields.optional_child("agreement")
        unknown = set(agreement.data) - set(AGREEMENT_METRICS) if agreement else set()
        if agreement and unknown:
            raise agreement.fail(sorted(unknown)[0], f"unknown metric; use {AGREEMENT_METRICS}")
        return cls(
            name=fields.text("name"),
            protocol=protocol,
            reasoning=reasoning,
            agreement={
                m: agreement.number(m, low=-1.0, high=1.0) if agreement else None
                for m in AGREEMENT_METRICS
            },
            invalid_rate=fields.number("invalid_rate", low=0.0, high=1.0),
            reasoning_tokens_mean=fields.number("reasoning_tokens_mean", low=0.0),
            seconds_per_judgement=fields.number("seconds_per_judgement", low=0.0),
            tokens_per_judgement=fields.number("tokens_per_judgement", low=0.0),
        )


@dataclass(frozen=True)
class JudgesFile:
    """The judges and, when recorded, the gold score scale ``(min, max)``."""

    judges: tuple[JudgeRecord, ...]
    scale: tuple[float, float] | None

    @classmethod
    def load(cls, path: Path) -> JudgesFile:
        top = Fields.of(read_json(path), path)
        judges = tuple(
            JudgeRecord.from_json(Fields.of(item, path, None, f"judges[{i}]"))
            for i, item in enumerate(top.items("judges"))
        )
        names = [j.name for j in judges]
        duplicate = next((n for n in names if names.count(n) > 1), None)
        if duplicate is not None:
            raise top.fail("judges", f"judge {duplicate!r} listed twice")
        return cls(judges, _scale(top))


def _scale(top: Fields) -> tuple[float, float] | None:
    scale = top.optional_child("scale")
    if scale is None:
        return None
    low, high = scale.number("min", required=True), scale.number("max", required=True)
    if low is None or high is None or not low < high:
        raise top.fail("scale", f"needs finite min < max, got {low}, {high}")
    return low, high
