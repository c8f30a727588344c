"""The judges' agreement with gold against their cost: one point per judge, untrained → trained."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from judgelab.evaluation.report.jsonio import Fields, read_json
from judgelab.evaluation.report.judges import JudgeRecord
from judgelab.evaluation.report.plotting import arm_grid, save

FIGURE = "report/judges_agreement_vs_cost.png"
PANEL_WIDTH, PANEL_HEIGHT = 6.8, 6.0  # inches; room for judge names, legend below
PLOT_TITLE = "Judges: agreement with gold vs cost"
#: protocol → (agreement metric plotted, its label, chance level: a dashed line).
METRICS = {
    "pointwise": ("alpha_interval", "Krippendorff's α (interval)", 0.0),
    "pairwise": ("accuracy", "pairwise accuracy", 0.5),
}
KINDS = {  # reasoning flag → (legend label, colour, marker)
    True: ("reasoning judge", "tab:orange", "D"),
    False: ("non-reasoning judge", "tab:blue", "o"),
    None: ("reasoning not recorded", "tab:gray", "s"),
}


@dataclass(frozen=True)
class TrainingRecord:
    """What judges.json says beyond the report's judge record: trained or not, and untrained α."""

    trained: bool | None
    untrained: dict[str, float | None] | None


@dataclass(frozen=True)
class JudgePoint:
    name: str
    protocol: str
    reasoning: bool | None
    seconds: float
    agreement: float
    trained: bool | None
    untrained: float | None  # the same judge before training, drawn at the same cost


def training_records(path: Path) -> dict[str, TrainingRecord]:
    """Per judge name: its ``trained`` flag and its ``untrained`` agreement block, else the
    agreement of its ``trained: false`` entry in the ``evaluations`` list (when recorded)."""
    top = Fields.of(read_json(path), path)
    records: dict[str, TrainingRecord] = {}
    for i, item in enumerate(top.items("judges")):
        judge = Fields.of(item, path, None, f"judges[{i}]")
        block = judge.optional_child("untrained")
        records[judge.text("name")] = TrainingRecord(_flag(judge), _agreement(block))
    for i, item in enumerate(top.items("evaluations", required=False)):
        entry = Fields.of(item, path, None, f"evaluations[{i}]")
        name = entry.data.get("name")
        known = records.get(name) if isinstance(name, str) else None
        if known and known.trained and known.untrained is None and _flag(entry) is False:
            records[str(name)] = TrainingRecord(True, _agreement(entry))
    return records


def _flag(fields: Fields) -> bool | None:
    value = fields.data.get("trained")
    if value is not None and not isinstance(value, bool):
        raise fields.fail("trained", f"expected true, false or null, got {value!r}")
    return value


def _agreement(fields: Fields | None) -> dict[str, float | None] | None:
    # No [-1, 1] bound: Krippendorff's α can fall below -1 on a small, degenerate sample.
    return None if fields is None else {m: fields.number(m) for m, _, _ in METRICS.values()}


def plot_points(
    judges: tuple[JudgeRecord, ...], training: dict[str, TrainingRecord]
) -> tuple[list[JudgePoint], dict[str, str]]:
    """The judges that can be placed on the plot, and why each other judge cannot."""
    points: list[JudgePoint] = []
    left_out: dict[str, str] = {}
    for judge in judges:
        metric, label, _ = METRICS[judge.protocol]
        value, seconds = judge.agreement[metric], judge.seconds_per_judgement
        missing = [
            *(["no cost (`seconds_per_judgement`)"] if seconds is None else []),
            *([f"no {label}"] if value is None else []),
        ]
        if missing:
            left_out[judge.name] = " and ".join(missing) + " recorded"
        elif seconds == 0:
            left_out[judge.name] = "cost recorded as 0 s per judgement: no place on a log axis"
        else:
            assert seconds is not None and value is not None
            record = training.get(judge.name, TrainingRecord(None, None))
            before = record.untrained[metric] if record.untrained else None
            points.append(
                JudgePoint(
                    judge.name,
                    judge.protocol,
                    judge.reasoning,
                    seconds,
                    value,
                    record.trained,
                    before,
                )
            )
    return points, left_out


def plot_agreement_vs_cost(points: list[JudgePoint], path: Path) -> None:
    """One panel per protocol present (their agreement metrics differ); log-scale cost axis."""
    protocols = [p for p in METRICS if any(point.protocol == p for point in points)]
    figure, axes = arm_grid(len(protocols), PLOT_TITLE, sharey=False)
    figure.set_size_inches(PANEL_WIDTH * len(protocols), PANEL_HEIGHT)
    for ax, protocol in zip(axes, protocols, strict=True):
        _panel(ax, protocol, [p for p in points if p.protocol == protocol])
    handles: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    columns = 2 * len(protocols)
    figure.legend(
        list(handles.values()),
        list(handles),
        loc="lower center",
        ncol=columns,
        frameon=False,
        fontsize=9,
    )
    rows = -(-len(handles) // columns)
    save(figure, path, legend_space=0.035 * rows + 0.04)


def _panel(ax: Axes, protocol: str, points: list[JudgePoint]) -> None:
    _, label, chance = METRICS[protocol]
    for point in points:
        kind, colour, marker = KINDS[point.reasoning]
        hollow = point.trained is False
        ax.scatter(
            [point.seconds],
            [point.agreement],
            s=70,
            marker=marker,
            facecolors="white" if hollow else colour,
            edgecolors=colour,
            linewidths=1.8,
            zorder=3,
            label=kind,
        )
        suffix = " (untrained)" if hollow else ""
        ax.annotate(
            point.name + suffix,
            (point.seconds, point.agreement),
            xytext=(7, 5),
            textcoords="offset points",
            fontsize=9,
        )
        if point.untrained is not None:
            _untrained_arrow(ax, point, colour, marker)
    _legend_proxies(ax, points)
    ax.axhline(chance, color="0.5", linestyle="--", linewidth=1, label=f"chance ({chance:g})")
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    costs = [p.seconds for p in points]
    ax.set_xlim(min(costs) / 2.5, max(costs) * 2.5)
    values = [v for p in points for v in (p.agreement, p.untrained) if v is not None]
    ax.set_ylim(min(chance - 0.25, min(values) - 0.1), max(1.05, max(values) + 0.1))
    ax.set_xlabel("cost: seconds per judgement (log scale)")
    ax.set_ylabel(f"agreement with gold: {label}")
    ax.set_title(f"{protocol} judges", fontsize=11)
    ax.grid(True, which="both", alpha=0.3)


def _untrained_arrow(ax: Axes, point: JudgePoint, colour: str, marker: str) -> None:
    assert point.untrained is not None
    ax.scatter(
        [point.seconds],
        [point.untrained],
        s=70,
        marker=marker,
        facecolors="white",
        edgecolors=colour,
        linewidths=1.8,
        zorder=3,
    )
    ax.annotate(
        "",
        xy=(point.seconds, point.agreement),
        xytext=(point.seconds, point.untrained),
        arrowprops={"arrowstyle": "-|>", "color": colour, "lw": 1.4, "shrinkA": 5, "shrinkB": 6},
        zorder=2,
    )


def _legend_proxies(ax: Axes, points: list[JudgePoint]) -> None:
    """Legend entries for the hollow marker and the arrow, which no scatter call labels."""
    if any(p.trained is False or p.untrained is not None for p in points):
        hollow = Line2D([], [], color="0.3", marker="o", markerfacecolor="white", linestyle="none")
        hollow.set_label("untrained (hollow marker)")
        ax.add_line(hollow)
    if any(p.untrained is not None for p in points):
        arrow = Line2D([], [], color="0.3", marker=">", linestyle="-")
        arrow.set_label("untrained → trained, same judge and cost")
        ax.add_line(arrow)
