"""Report section: gold reward against d = sqrt(KL(π‖π_init)) with the Gao et al. RL-form fit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes

from judgelab.evaluation.report.document import Image, Paragraph, Section, Table, not_recorded
from judgelab.evaluation.report.gao import FitUnavailable, GaoFit, fit_gao, gao_curve
from judgelab.evaluation.report.plotting import arm_grid, save, shared_legend
from judgelab.evaluation.report.series import ArmSeries, fmt

TITLE = "Gold reward against KL distance (Gao et al. fit)"
FIGURE = "report/gold_vs_kl.png"


def kl_section(
    series: list[ArmSeries], scale: tuple[float, float], run_dir: Path
) -> tuple[Section, dict[str, Any]]:
    with_points = [s for s in series if s.kl_points()]
    if not with_points:
        return not_recorded(TITLE, "no gold evaluation with a KL value in any steps.jsonl."), {}
    fits = {s.arm: _fit(s) for s in with_points}
    results = {arm: _fit_result(fit) for arm, fit in fits.items()}
    _plot(with_points, fits, scale, run_dir / FIGURE)
    header = ("arm", "points", "α", "β", "R(0)", "R²", "note")
    rows = tuple(_row(arm, fit) for arm, fit in fits.items())
    intro = Paragraph(
        "Fit of the gold reward R against d = √KL(π‖π_init) in the RL form of Gao et al. (2023): "
        "`R(d) − R(0) = d·(α − β·log d)`, least squares; R(0) is the gold reward at step 0 "
        "(fitted when there is no KL = 0 evaluation). α > 0 is the initial gain rate; β > 0 makes "
        "gold peak at d* = exp(α/β − 1) and then fall: overoptimisation."
    )
    return Section(TITLE, (intro, Image(FIGURE, TITLE), Table(header, rows))), results


def _fit(series: ArmSeries) -> GaoFit | FitUnavailable:
    points = series.kl_points()
    return fit_gao([p.kl or 0.0 for p in points], [p.gold for p in points])


def _fit_result(fit: GaoFit | FitUnavailable) -> dict[str, Any]:
    if isinstance(fit, FitUnavailable):
        return {
            "status": "not enough points",
            "reason": fit.reason,
            "n_points": fit.n_points,
            "alpha": None,
            "beta": None,
            "intercept": None,
            "r2": None,
        }
    result: dict[str, Any] = {
        "status": "fitted",
        "n_points": fit.n_points,
        "alpha": fit.alpha,
        "beta": fit.beta,
        "intercept": fit.intercept,
        "intercept_fitted": fit.intercept_fitted,
        "r2": fit.r2,
        "peak_d": _peak(fit),
    }
    if fit.r2 is None:
        result["r2_reason"] = "gold reward is constant over the points: R² is undefined"
    if result["peak_d"] is None:
        result["peak_d_reason"] = "β <= 0: the fitted curve has no interior maximum"
    return result


def _peak(fit: GaoFit) -> float | None:
    """d where d(α − β log d) is largest: α − β(log d + 1) = 0."""
    if fit.beta <= 0:
        return None
    exponent = fit.alpha / fit.beta - 1.0
    return float(np.exp(exponent)) if exponent < 700 else None


def _row(arm: str, fit: GaoFit | FitUnavailable) -> tuple[str, ...]:
    if isinstance(fit, FitUnavailable):
        return (arm, str(fit.n_points), "—", "—", "—", "—", fit.reason)
    origin = "fitted" if fit.intercept_fitted else "measured at step 0"
    return (
        arm,
        str(fit.n_points),
        fmt(fit.alpha, 4),
        fmt(fit.beta, 4),
        fmt(fit.intercept),
        fmt(fit.r2),
        f"R(0) {origin}",
    )


def _plot(
    series: list[ArmSeries],
    fits: dict[str, GaoFit | FitUnavailable],
    scale: tuple[float, float],
    path: Path,
) -> None:
    figure, axes = arm_grid(len(series), TITLE)
    for ax, arm in zip(axes, series, strict=True):
        _panel(ax, arm, fits[arm.arm], scale)
    shared_legend(figure, axes)
    save(figure, path, legend_space=0.1 if len(series) <= 3 else 0.06)


def _panel(
    ax: Axes, arm: ArmSeries, fit: GaoFit | FitUnavailable, scale: tuple[float, float]
) -> None:
    points = arm.kl_points()
    d = np.sqrt(np.clip([p.kl or 0.0 for p in points], 0.0, None))
    ax.plot(d, [p.gold for p in points], "o", color="tab:orange", label="gold reward (eval)")
    proxy = [(di, p.proxy) for di, p in zip(d, points, strict=True) if p.proxy is not None]
    ax.plot(
        [x for x, _ in proxy],
        [y for _, y in proxy],
        "s",
        color="tab:cyan",
        mfc="none",
        label="proxy reward (eval)",
    )
    if isinstance(fit, GaoFit):
        grid = np.linspace(0.0, float(d.max()) * 1.05, 200)
        r2 = "undefined" if fit.r2 is None else f"{fit.r2:.3f}"
        ax.plot(
            grid,
            fit.intercept + gao_curve(grid, fit.alpha, fit.beta),
            "-",
            color="black",
            lw=1.4,
            label="Gao fit R(0) + d(α − β log d)",
        )
        note = f"α = {fit.alpha:.3f}, β = {fit.beta:.3f}, R² = {r2}"
    else:
        note = "fit: not enough points"
    ax.set_title(f"arm: {arm.arm}\n{note}", fontsize=10)
    ax.set_xlabel("d = √KL(π‖π_init)  (√nats)")
    ax.set_ylabel(f"mean reward (score, {scale[0]:g}–{scale[1]:g})")
    ax.grid(alpha=0.3)
