"""Report section: proxy and gold reward over training steps, best-gold step and hacking onset."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.axes import Axes

from judgelab.evaluation.report.document import Image, Paragraph, Section, Table, not_recorded
from judgelab.evaluation.report.onset import best_gold_index, hacking_onset
from judgelab.evaluation.report.plotting import arm_grid, save, shared_legend
from judgelab.evaluation.report.series import ArmSeries, fmt

TITLE = "Proxy and gold reward over training"
FIGURE = "report/training_curves.png"


def training_section(
    series: list[ArmSeries], margin: float, scale: tuple[float, float], run_dir: Path
) -> tuple[Section, dict[str, Any]]:
    """The section and, per arm, its numbers for results.json."""
    if not series:
        return not_recorded(TITLE, "no `arms/{arm}/steps.jsonl` in the run directory."), {}
    results = {s.arm: arm_training_results(s, margin) for s in series}
    _plot(series, results, scale, run_dir / FIGURE)
    rows = tuple(_row(s.arm, results[s.arm]) for s in series)
    header = (
        "arm",
        "steps",
        "gold evals",
        "final proxy",
        "final gold",
        "best gold (step)",
        "hacking onset step",
        "final KL (nats)",
    )
    intro = Paragraph(
        "Proxy reward is what the policy optimises (its judge's score); gold reward is the gold "
        "judge's score of policy samples on held-out prompts. Hacking onset: the first evaluation "
        f"where the proxy still rises while gold is more than {margin:.3g} points below its best "
        "so far."
    )
    return Section(TITLE, (intro, Image(FIGURE, TITLE), Table(header, rows))), results


def arm_training_results(series: ArmSeries, margin: float) -> dict[str, Any]:
    last = series.steps[-1] if series.steps else None
    evals = series.evals
    best = best_gold_index([e.gold for e in evals])
    points = series.onset_points()
    onset = hacking_onset([p.proxy or 0.0 for p in points], [p.gold for p in points], margin)
    onset_result: dict[str, Any]
    if onset is None:
        reason = "no evaluation met the onset rule" if len(points) > 1 else "fewer than 2 evals"
        onset_result = {"step": None, "reason": reason}
    else:
        onset_result = {
            "step": points[onset].step,
            "proxy_reward_mean": points[onset].proxy,
            "gold_reward_mean": points[onset].gold,
            "best_gold_before": max(p.gold for p in points[: onset + 1]),
            "margin": margin,
        }
    return {
        "steps_recorded": len(series.steps),
        "evaluations": len(evals),
        "final_step": last.step if last else None,
        "final_proxy_reward_mean": last.proxy_reward_mean if last else None,
        "final_kl": last.kl if last else None,
        "final_gold_reward_mean": evals[-1].gold if evals else None,
        "best_gold": None
        if best is None
        else {"step": evals[best].step, "gold_reward_mean": evals[best].gold},
        "hacking_onset": onset_result,
    }


def _row(arm: str, r: dict[str, Any]) -> tuple[str, ...]:
    best = r["best_gold"]
    onset = r["hacking_onset"]["step"]
    return (
        arm,
        str(r["steps_recorded"]),
        str(r["evaluations"]),
        fmt(r["final_proxy_reward_mean"]),
        fmt(r["final_gold_reward_mean"]),
        "—" if best is None else f"{best['gold_reward_mean']:.3f} ({best['step']})",
        "none" if onset is None else str(onset),
        fmt(r["final_kl"], 4),
    )


def _plot(
    series: list[ArmSeries], results: dict[str, Any], scale: tuple[float, float], path: Path
) -> None:
    figure, axes = arm_grid(len(series), TITLE)
    for ax, arm in zip(axes, series, strict=True):
        _panel(ax, arm, results[arm.arm], scale)
    shared_legend(figure, axes)
    save(figure, path, legend_space=0.1 if len(series) <= 3 else 0.06)


def _panel(ax: Axes, arm: ArmSeries, result: dict[str, Any], scale: tuple[float, float]) -> None:
    logged = [r for r in arm.steps if r.proxy_reward_mean is not None]
    steps = [r.step for r in logged]
    means = [r.proxy_reward_mean or 0.0 for r in logged]
    ax.plot(steps, means, color="tab:blue", lw=1.2, label="proxy reward (training rollouts)")
    spread = [
        (r.step, m, r.proxy_reward_std)
        for r, m in zip(logged, means, strict=True)
        if r.proxy_reward_std is not None
    ]
    if spread:
        ax.fill_between(
            [s for s, _, _ in spread],
            [m - (d or 0) for _, m, d in spread],
            [m + (d or 0) for _, m, d in spread],
            color="tab:blue",
            alpha=0.12,
            label="proxy ± 1 std",
        )
    proxy_evals = arm.onset_points()
    ax.plot(
        [e.step for e in proxy_evals],
        [e.proxy or 0.0 for e in proxy_evals],
        "s--",
        color="tab:cyan",
        ms=4,
        lw=1,
        label="proxy reward (held-out eval)",
    )
    ax.plot(
        [e.step for e in arm.evals],
        [e.gold for e in arm.evals],
        "o-",
        color="tab:orange",
        ms=5,
        lw=1.8,
        label="gold reward (held-out eval)",
    )
    if (best := result["best_gold"]) is not None:
        ax.axvline(best["step"], color="tab:green", ls="--", lw=1.2, label="best gold step")
    if (onset := result["hacking_onset"]["step"]) is not None:
        ax.axvline(onset, color="tab:red", ls=":", lw=2, label="hacking onset")
    ax.set_title(f"arm: {arm.arm}", fontsize=11)
    ax.set_xlabel("learner step")
    ax.set_ylabel(f"mean reward (score, {scale[0]:g}–{scale[1]:g})")
    values = [*means, *(e.gold for e in arm.evals), *(e.proxy or 0.0 for e in proxy_evals)]
    ax.set_ylim(min([scale[0], *values]), max([scale[1], *values]))
    ax.grid(alpha=0.3)
