"""Matplotlib plumbing shared by the figures: Agg rendering without pyplot's global state."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

PANEL_WIDTH, PANEL_HEIGHT = 5.2, 3.6
DPI = 110


def arm_grid(count: int, title: str, *, sharey: bool = True) -> tuple[Figure, list[Axes]]:
    """A figure with one panel per arm (up to 3 per row); unused panels are hidden."""
    cols = max(1, min(count, 3))
    rows = max(1, math.ceil(count / cols))
    figure = Figure(figsize=(PANEL_WIDTH * cols, PANEL_HEIGHT * rows + 0.9), dpi=DPI)
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, cols, squeeze=False, sharey=sharey).ravel().tolist()
    for extra in axes[count:]:
        extra.set_visible(False)
    figure.suptitle(title, fontsize=13, fontweight="bold")
    return figure, axes[:count]


def single(title: str, width: float, height: float) -> tuple[Figure, Axes]:
    figure = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    axes.set_title(title, fontsize=13, fontweight="bold")
    return figure, axes


def shared_legend(figure: Figure, axes: list[Axes]) -> None:
    """One legend below the panels with each label once."""
    handles: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    if handles:
        figure.legend(
            list(handles.values()),
            list(handles),
            loc="lower center",
            ncol=min(len(handles), 4),
            frameon=False,
            fontsize=9,
        )


def save(figure: Figure, path: Path, *, legend_space: float = 0.0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout(rect=(0.0, legend_space, 1.0, 0.96))
    figure.savefig(path, format="png")
