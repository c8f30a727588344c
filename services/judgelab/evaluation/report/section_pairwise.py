"""Report section: Arena-Hard-style win rate of each arm's final policy vs the baseline."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from judgelab.evaluation.report.bootstrap import WinRate, bootstrap_win_rate
from judgelab.evaluation.report.document import Image, Paragraph, Section, Table, not_recorded
from judgelab.evaluation.report.evaluate import PairwiseFile
from judgelab.evaluation.report.options import ReportOptions
from judgelab.evaluation.report.plotting import save, single

TITLE = "Pairwise win rate against the baseline"
FIGURE = "report/win_rate.png"
#: The row of the initial policy's own win rate, shown when the baseline is an answers file.
INITIAL_ROW = "initial policy"


def pairwise_section(
    pairwise: PairwiseFile | None, arms: tuple[str, ...], options: ReportOptions, run_dir: Path
) -> tuple[Section, dict[str, Any]]:
    if pairwise is None:
        return not_recorded(TITLE, "`evaluate/pairwise.json` is missing."), {}
    order = [a for a in arms if a in pairwise.credits]
    empty = [a for a in order if not pairwise.credits[a]]
    rates = {arm: _rate(pairwise.credits[arm], options) for arm in order if arm not in empty}
    if not rates:
        return not_recorded(TITLE, "`evaluate/pairwise.json` has no outcomes."), {}
    initial = _rate(pairwise.initial, options) if pairwise.initial else None
    if initial is not None:
        rates[INITIAL_ROW] = initial  # for comparison: where the arms started
    _plot(rates, pairwise, options, run_dir / FIGURE)
    level = f"{100 * options.confidence:g}%"
    header = ("arm", "prompts", "win rate", f"{level} CI")
    rows = tuple(
        (a, str(r.n), f"{r.rate:.3f}", f"[{r.low:.3f}, {r.high:.3f}]") for a, r in rates.items()
    )
    rows += tuple((a, "0", "—", "no outcomes recorded") for a in empty)
    intro = Paragraph(
        f"Judge: {pairwise.judge}; baseline: {pairwise.baseline}. Ties count half. Interval: "
        f"percentile bootstrap over prompts, {options.bootstrap_resamples} resamples, seed "
        f"{options.bootstrap_seed}."
        + (
            f" Row '{INITIAL_ROW}': the starting policy against the same answers, for comparison."
            if initial is not None
            else ""
        )
    )
    results: dict[str, Any] = {a: asdict(r) for a, r in rates.items() if a != INITIAL_ROW}
    results.update({a: {"rate": None, "reason": "no outcomes recorded"} for a in empty})
    return Section(TITLE, (intro, Image(FIGURE, TITLE), Table(header, rows))), {
        "judge": pairwise.judge,
        "baseline": pairwise.baseline,
        "arms": results,
        "initial_policy": None if initial is None else asdict(initial),
    }


def _rate(credits: tuple[float, ...], options: ReportOptions) -> WinRate:
    return bootstrap_win_rate(
        credits,
        resamples=options.bootstrap_resamples,
        seed=options.bootstrap_seed,
        confidence=options.confidence,
    )


def _plot(
    rates: dict[str, WinRate], pairwise: PairwiseFile, options: ReportOptions, path: Path
) -> None:
    arms = list(rates)
    figure, ax = single(TITLE, 7.5, max(3.2, 0.55 * len(arms) + 2.4))
    y = range(len(arms))
    values = [rates[a].rate for a in arms]
    errors = [
        [rates[a].rate - rates[a].low for a in arms],
        [rates[a].high - rates[a].rate for a in arms],
    ]
    ax.barh(
        y,
        values,
        xerr=errors,
        color="tab:purple",
        alpha=0.45,
        capsize=5,
        label=f"win rate ± {100 * options.confidence:g}% bootstrap CI",
    )
    for i, arm in enumerate(arms):
        r = rates[arm]
        ax.text(0.01, i, f"{r.rate:.2f} [{r.low:.2f}, {r.high:.2f}]", va="center", fontsize=9)
    ax.axvline(0.5, color="black", ls="--", lw=1, label="parity with baseline (0.5)")
    ax.set_yticks(list(y), arms)
    ax.invert_yaxis()
    ax.set_xlim(0.0, 1.0)
    ax.set_xlabel(f"win rate vs {_short(pairwise.baseline)} (tie = ½)\njudge: {pairwise.judge}")
    ax.set_ylabel("arm")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.28), ncol=2, fontsize=8, frameon=False)
    ax.grid(axis="x", alpha=0.3)
    save(figure, path)


def _short(baseline: str) -> str:
    """The baseline for an axis label: an answers file by its name, not its whole path."""
    prefix = "baseline answers: "
    if baseline.startswith(prefix):
        return f"baseline answers ({Path(baseline.removeprefix(prefix)).name})"
    return baseline
