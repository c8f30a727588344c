"""Report section: cross-judge matrix — every judge (and gold) scores every arm's final outputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.patches import Rectangle

from judgelab.evaluation.report.document import Image, Paragraph, Section, Table, not_recorded
from judgelab.evaluation.report.evaluate import GOLD, CrossScores
from judgelab.evaluation.report.plotting import save as save_figure
from judgelab.evaluation.report.plotting import single
from judgelab.evaluation.report.series import fmt

TITLE = "Cross-judge matrix"
FIGURE = "report/cross_judge_heatmap.png"


def cross_section(
    cross: CrossScores | None, arms: tuple[str, ...], scale: tuple[float, float], run_dir: Path
) -> tuple[Section, dict[str, Any]]:
    if cross is None:
        return not_recorded(TITLE, "`evaluate/cross_scores.json` is missing."), {}
    scorers = sorted(cross.scores, key=lambda s: (s != GOLD, s))
    columns = [a for a in arms if any(a in row for row in cross.scores.values())]
    if not scorers or not columns:
        return not_recorded(TITLE, "`evaluate/cross_scores.json` has no scores."), {}
    matrix = [[cross.scores[s].get(a) for a in columns] for s in scorers]
    _plot(scorers, columns, matrix, scale, run_dir / FIGURE)
    rows = tuple((s, *(fmt(v) for v in row)) for s, row in zip(scorers, matrix, strict=True))
    intro = Paragraph(
        "Mean score each scorer (row) gives each arm's final outputs (column). A proxy judge "
        "that rates its own arm (boxed cell) far above what gold does is being gamed."
    )
    section = Section(
        TITLE, (intro, Image(FIGURE, TITLE), Table(("scorer \\ arm", *columns), rows))
    )
    return section, {
        s: dict(zip(columns, row, strict=True)) for s, row in zip(scorers, matrix, strict=True)
    }


def _plot(
    scorers: list[str],
    arms: list[str],
    matrix: list[list[float | None]],
    scale: tuple[float, float],
    path: Path,
) -> None:
    values = np.array([[np.nan if v is None else v for v in row] for row in matrix])
    figure, ax = single(TITLE, max(5.5, 1.3 * len(arms) + 3), max(3.2, 0.6 * len(scorers) + 2))
    ax.set_facecolor("0.85")  # masked (not recorded) cells: grey, labelled "n/a" in black
    image = ax.imshow(
        np.ma.masked_invalid(values), cmap="viridis", vmin=scale[0], vmax=scale[1], aspect="auto"
    )
    colorbar = figure.colorbar(image, ax=ax)
    colorbar.set_label(f"mean score ({scale[0]:g}–{scale[1]:g})")
    ax.set_xticks(range(len(arms)), arms, rotation=20, ha="right")
    ax.set_yticks(range(len(scorers)), scorers)
    ax.set_xlabel("arm (policy trained against this judge)\nred box: the arm's own judge")
    ax.set_ylabel("scorer")
    middle = (scale[0] + scale[1]) / 2
    for i, row in enumerate(values):
        for j, v in enumerate(row):
            text = "n/a" if np.isnan(v) else f"{v:.2f}"
            color = "black" if np.isnan(v) or v >= middle else "white"
            ax.text(j, i, text, ha="center", va="center", color=color, fontsize=10)
            if scorers[i] == arms[j]:
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, ec="red", lw=2.5))
    save_figure(figure, path)
