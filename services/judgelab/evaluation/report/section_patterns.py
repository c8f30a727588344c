"""Report sections: adversarial-pattern counts (start vs end) and start-vs-end sample outputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from judgelab.evaluation.report.document import (
    Block,
    Image,
    Paragraph,
    Preformatted,
    Section,
    Table,
    not_recorded,
)
from judgelab.evaluation.report.evaluate import OutputRecord
from judgelab.evaluation.report.options import ReportOptions
from judgelab.evaluation.report.patterns import (
    DETECTOR_NAMES,
    StageCounts,
    sample_pairs,
    stage_counts,
)
from judgelab.evaluation.report.plotting import arm_grid, save, shared_legend

TITLE = "Adversarial patterns in the policy's outputs"
SAMPLES_TITLE = "Sample outputs, start vs end of training"
FIGURE = "report/adversarial_patterns.png"
MISSING = "no `evaluate/outputs/{arm}.jsonl` in the run directory."


def patterns_section(
    outputs: dict[str, list[OutputRecord]], arms: tuple[str, ...], run_dir: Path
) -> tuple[Section, dict[str, Any]]:
    order = [a for a in arms if a in outputs]
    if not order:
        return not_recorded(TITLE, MISSING), {}
    counts = {a: stage_counts(outputs[a]) for a in order}
    _plot(counts, run_dir / FIGURE)
    header = ("arm", "outputs (start / end)", *DETECTOR_NAMES)
    rows = tuple(
        (
            a,
            f"{c['start'].n} / {c['end'].n}",
            *(f"{c['start'].counts[d]} → {c['end'].counts[d]}" for d in DETECTOR_NAMES),
        )
        for a, c in counts.items()
    )
    intro = Paragraph(
        "Outputs flagged by each detector of `judgelab.evaluation.hacking`, at the start of "
        "training → at the end (counts of outputs; each output counts once per detector)."
    )
    results = {
        a: {stage: {"n": sc.n, "counts": sc.counts} for stage, sc in c.items()}
        for a, c in counts.items()
    }
    return Section(TITLE, (intro, Image(FIGURE, TITLE), Table(header, rows))), results


def samples_section(
    outputs: dict[str, list[OutputRecord]], arms: tuple[str, ...], options: ReportOptions
) -> Section:
    order = [a for a in arms if a in outputs]
    if not order:
        return not_recorded(SAMPLES_TITLE, MISSING)
    blocks: list[Block] = []
    for arm in order:
        blocks.append(Paragraph(f"**arm: {arm}**"))
        for number, pair in enumerate(sample_pairs(outputs[arm], options.samples_per_arm), 1):
            blocks.append(Preformatted(f"Prompt {number}:", _cut(pair.prompt, options)))
            for stage in ("start", "end"):
                text = pair.start if stage == "start" else pair.end
                flags = ", ".join(pair.flags(stage)) or "none"
                label = f"{stage.capitalize()} of training (patterns: {flags}):"
                blocks.append(
                    Preformatted(label, "(not recorded)" if text is None else _cut(text, options))
                )
    return Section(SAMPLES_TITLE, tuple(blocks))


def _cut(text: str, options: ReportOptions) -> str:
    limit = options.sample_chars
    return text if len(text) <= limit else text[:limit] + f" … [{len(text) - limit} more chars]"


def _plot(counts: dict[str, dict[str, StageCounts]], path: Path) -> None:
    figure, axes = arm_grid(len(counts), "Adversarial patterns: start vs end of training")
    x = np.arange(len(DETECTOR_NAMES))
    for ax, (arm, stages) in zip(axes, counts.items(), strict=True):
        for offset, (stage, color) in zip(
            (-0.2, 0.2), (("start", "tab:gray"), ("end", "tab:red")), strict=True
        ):
            sc = stages[stage]
            share = [100 * sc.counts[d] / sc.n if sc.n else 0.0 for d in DETECTOR_NAMES]
            bars = ax.bar(x + offset, share, width=0.4, color=color, label=f"{stage} of training")
            ax.bar_label(bars, [str(sc.counts[d]) for d in DETECTOR_NAMES], fontsize=8)
        ax.set_xticks(x, [d.replace("_", "\n") for d in DETECTOR_NAMES], fontsize=8)
        ax.set_title(f"arm: {arm} (n = {stages['start'].n} / {stages['end'].n})", fontsize=11)
        ax.set_ylabel("outputs flagged (%; label = count)")
        ax.set_xlabel("detector")
        ax.set_ylim(0, 110)
        ax.grid(axis="y", alpha=0.3)
    shared_legend(figure, axes)
    save(figure, path, legend_space=0.08)
