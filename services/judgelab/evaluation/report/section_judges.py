"""Report section: each proxy judge's agreement with gold, invalid rate and cost."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from judgelab.evaluation.report.document import Paragraph, Section, Table, not_recorded
from judgelab.evaluation.report.judges import AGREEMENT_METRICS, JudgesFile
from judgelab.evaluation.report.series import fmt

TITLE = "Judges: agreement with gold, invalid rate, cost"
HEADERS = {
    "alpha_interval": "α (interval)",
    "alpha_ordinal": "α (ordinal)",
    "pearson": "Pearson r",
    "spearman": "Spearman ρ",
    "accuracy": "pairwise accuracy",
}


def judges_section(judges: JudgesFile | None) -> tuple[Section, list[dict[str, Any]]]:
    if judges is None:
        return not_recorded(TITLE, "`judges.json` is missing from the run directory."), []
    if not judges.judges:
        return not_recorded(TITLE, "`judges.json` lists no judges."), []
    header = (
        "judge",
        "protocol",
        "reasoning",
        *(HEADERS[m] for m in AGREEMENT_METRICS),
        "invalid rate",
        "reasoning tokens (mean)",
        "s / judgement",
        "tokens / judgement",
    )
    rows = tuple(
        (
            j.name,
            j.protocol,
            {True: "yes", False: "no", None: "—"}[j.reasoning],
            *(fmt(j.agreement[m]) for m in AGREEMENT_METRICS),
            "—" if j.invalid_rate is None else f"{100 * j.invalid_rate:.1f}%",
            fmt(j.reasoning_tokens_mean, 0),
            fmt(j.seconds_per_judgement, 3),
            fmt(j.tokens_per_judgement, 0),
        )
        for j in judges.judges
    )
    intro = Paragraph(
        "Agreement with the gold judge on held-out gold-labelled data: Krippendorff's α, Pearson "
        "and Spearman correlation for pointwise judges; accuracy (share of pairs where the judge "
        "prefers the gold-preferred response) for pairwise judges. — means not recorded."
    )
    return Section(TITLE, (intro, Table(header, rows))), [asdict(j) for j in judges.judges]
