"""``build_report(run_dir)``: read the run's recorded data, write report.md/.html, PNGs, JSON."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from judgelab.evaluation.report import (
    section_cross,
    section_kl,
    section_pairwise,
    section_patterns,
    section_self_improve,
    section_training,
)
from judgelab.evaluation.report.document import (
    Image,
    Paragraph,
    Section,
    Table,
    render_html,
    render_markdown,
)
from judgelab.evaluation.report.options import DEFAULT_SCALE, ReportOptions
from judgelab.evaluation.report.plot_judges import FIGURE as JUDGES_FIGURE
from judgelab.evaluation.report.results import write_results
from judgelab.evaluation.report.rundata import RunData, load_run
from judgelab.evaluation.report.section_judges import judges_section
from judgelab.evaluation.report.series import ArmSeries

FIGURES = (
    section_training.FIGURE,
    section_kl.FIGURE,
    JUDGES_FIGURE,
    section_cross.FIGURE,
    section_pairwise.FIGURE,
    section_patterns.FIGURE,
    section_self_improve.FIGURE,
)


@dataclass(frozen=True)
class ReportResult:
    markdown: Path
    html: Path
    results: Path
    figures: tuple[Path, ...]

    def paths(self) -> list[Path]:
        return [self.markdown, self.html, self.results, *self.figures]


def build_report(run_dir: Path, options: ReportOptions | None = None) -> ReportResult:
    """Write the report; raises ReportInputError (file:line) for a malformed input."""
    options = options or ReportOptions()
    run = load_run(Path(run_dir))
    root = run.paths.root
    for stale in FIGURES:
        (root / stale).unlink(missing_ok=True)
    if run.self_improve is not None:
        return _self_improve_report(run, options)
    scale = options.scale or (run.judges.scale if run.judges else None) or DEFAULT_SCALE
    margin = options.onset_margin_fraction * (scale[1] - scale[0])
    series = [ArmSeries.of(arm, run.steps[arm]) for arm in run.arms if arm in run.steps]

    training, training_results = section_training.training_section(series, margin, scale, root)
    kl, kl_results = section_kl.kl_section(series, scale, root)
    judges, judges_results = judges_section(run.judges, root)
    cross, cross_results = section_cross.cross_section(run.cross, run.arms, scale, root)
    pairwise, pairwise_results = section_pairwise.pairwise_section(
        run.pairwise, run.arms, options, root
    )
    patterns, pattern_results = section_patterns.patterns_section(run.outputs, run.arms, root)
    samples = section_patterns.samples_section(run.outputs, run.arms, options)
    sections = [_inputs_section(run), training, kl, judges, cross, pairwise, patterns, samples]

    return _write(
        run,
        sections,
        {
            "run_dir": str(root),
            "arms": list(run.arms),
            "options": {**asdict(options), "scale": list(scale), "onset_margin": margin},
            "inputs": _recorded(run),
            "training": training_results,
            "gao_fit": kl_results,
            "judges": judges_results,
            "cross_scores": cross_results,
            "pairwise": pairwise_results,
            "adversarial_patterns": pattern_results,
        },
    )


def _self_improve_report(run: RunData, options: ReportOptions) -> ReportResult:
    """A dpo-self-judge study: no learner steps, KL or proxy judges; its own section instead."""
    assert run.self_improve is not None
    root = run.paths.root
    study, study_results = section_self_improve.self_improve_section(
        run.self_improve, options, root
    )
    patterns, pattern_results = section_patterns.patterns_section(run.outputs, run.arms, root)
    samples = section_patterns.samples_section(run.outputs, run.arms, options)
    inputs = Section(
        "Inputs",
        (
            Paragraph(
                f"Run directory `{root}`; a dpo-self-judge study, arms: {', '.join(run.arms)}; "
                f"read from `{run.self_improve.path.relative_to(root)}` and "
                "`evaluate/outputs/{arm}.jsonl`."
            ),
        ),
    )
    return _write(
        run,
        [inputs, study, patterns, samples],
        {
            "run_dir": str(root),
            "study": "dpo-self-judge",
            "arms": list(run.arms),
            "options": asdict(options),
            "inputs": _recorded(run),
            "self_improve": study_results,
            "adversarial_patterns": pattern_results,
        },
    )


def _write(run: RunData, sections: list[Section], results: dict[str, Any]) -> ReportResult:
    root = run.paths.root
    title = f"judgelab study report — {root.name}"
    markdown, html, results_path = root / "report.md", root / "report.html", root / "results.json"
    markdown.write_text(render_markdown(title, sections), encoding="utf-8")
    html.write_text(render_html(title, sections, root), encoding="utf-8")
    write_results({**results, "sections": {s.title: _status(s) for s in sections}}, results_path)
    figures = tuple(root / f for f in _figures(sections))
    return ReportResult(markdown, html, results_path, figures)


def _recorded(run: RunData) -> dict[str, Any]:
    p = run.paths
    return {
        "steps": {arm: str(p.steps(arm)) for arm in run.steps},
        "judges": str(p.judges) if run.judges else None,
        "cross_scores": str(p.cross_scores) if run.cross else None,
        "pairwise": str(p.pairwise) if run.pairwise else None,
        "outputs": {arm: str(p.outputs_dir / f"{arm}.jsonl") for arm in run.outputs},
    }


def _inputs_section(run: RunData) -> Section:
    p, root = run.paths, run.paths.root

    def rel(path: Path) -> str:
        return f"`{path.relative_to(root)}`"

    rows = [(rel(p.steps(a)), "recorded" if a in run.steps else "not recorded") for a in run.arms]
    rows += [
        (rel(path), "recorded" if present else "not recorded")
        for path, present in (
            (p.judges, run.judges),
            (p.cross_scores, run.cross),
            (p.pairwise, run.pairwise),
        )
    ]
    rows += [
        (rel(p.outputs_dir / f"{a}.jsonl"), "recorded" if a in run.outputs else "not recorded")
        for a in run.arms
    ]
    arms = ", ".join(run.arms) or "none found"
    return Section(
        "Inputs",
        (
            Paragraph(f"Run directory `{root}`; arms: {arms}."),
            Table(("file", "status"), tuple(rows)),
        ),
    )


def _status(section: Section) -> str:
    first = section.blocks[0] if section.blocks else None
    if isinstance(first, Paragraph) and first.text.startswith("Not recorded"):
        return "not recorded"
    return "ok"


def _figures(sections: list[Section]) -> list[str]:
    return [b.file for s in sections for b in s.blocks if isinstance(b, Image)]
