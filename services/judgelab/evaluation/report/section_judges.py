"""Report section: each proxy judge's agreement with gold, invalid rate and cost."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from judgelab.evaluation.report.document import (
    Block,
    Image,
    Paragraph,
    Section,
    Table,
    not_recorded,
)
from judgelab.evaluation.report.judges import AGREEMENT_METRICS, JudgesFile
from judgelab.evaluation.report.plot_judges import (
    FIGURE,
    PLOT_TITLE,
    JudgePoint,
    plot_agreement_vs_cost,
    plot_points,
    training_records,
)
from judgelab.evaluation.report.rundata import RunPaths
from judgelab.evaluation.report.series import fmt

TITLE = "Judges: agreement with gold, invalid rate, cost"
HEADERS = {
    "alpha_interval": "α (interval)",
    "alpha_ordinal": "α (ordinal)",
    "pearson": "Pearson r",
    "spearman": "Spearman ρ",
    "accuracy": "pairwise accuracy",
}


def judges_section(
    judges: JudgesFile | None, run_dir: Path
) -> tuple[Section, list[dict[str, Any]]]:
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
    training = training_records(RunPaths(run_dir).judges)
    points, left_out = plot_points(judges.judges, training)
    if points:
        plot_agreement_vs_cost(points, run_dir / FIGURE)
    results = [
        {
            **asdict(j),
            "untrained_agreement": (training[j.name].untrained if j.name in training else None),
            "left_out_of_plot": left_out.get(j.name),
        }
        for j in judges.judges
    ]
    blocks = (intro, Table(header, rows), *_plot_blocks(points, left_out))
    return Section(TITLE, blocks), results


def _plot_blocks(points: list[JudgePoint], left_out: dict[str, str]) -> list[Block]:
    blocks: list[Block] = []
    if points:
        arrows = any(p.untrained is not None for p in points)
        blocks += [
            Image(FIGURE, PLOT_TITLE),
            Paragraph(
                "Agreement with gold (pointwise: Krippendorff's α interval; pairwise: accuracy) "
                "against seconds per judgement, log scale; colour and marker: reasoning or not."
                + (
                    " Hollow marker and arrow: the same judge untrained → trained, drawn at the "
                    "trained judge's cost."
                    if arrows
                    else ""
                )
            ),
        ]
    if left_out:
        names = "; ".join(f"`{name}`: {why}" for name, why in left_out.items())
        lead = "Left out of the plot" if points else "No judge could be plotted"
        blocks.append(Paragraph(f"{lead} — {names}."))
    return blocks
