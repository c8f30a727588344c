"""The judges' agreement-vs-cost plot: written under the table; judges left out are named."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from judgelab.evaluation.report import ReportInputError, build_report
from judgelab.evaluation.report.judges import JudgesFile
from judgelab.evaluation.report.plot_judges import (
    FIGURE,
    PANEL_WIDTH,
    plot_points,
    training_records,
)
from judgelab.evaluation.report.plotting import DPI
from judgelab.evaluation.report.synthetic import write_synthetic_run

NO_METRICS = {"alpha_interval": None, "alpha_ordinal": None, "pearson": None, "spearman": None}


def _judge(name: str, protocol: str = "pointwise", **fields: Any) -> dict[str, Any]:
    return {
        "name": name,
        "protocol": protocol,
        "reasoning": "reason" in name,
        "agreement": {**NO_METRICS, "accuracy": None, **fields.pop("agreement", {})},
        "seconds_per_judgement": 0.3,
        **fields,
    }


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return write_synthetic_run(tmp_path / "run", noise=0.02)


def _write_judges(run_dir: Path, judges: list[dict[str, Any]], **extra: Any) -> Path:
    path = run_dir / "judges.json"
    path.write_text(json.dumps({"scale": {"min": 0, "max": 9}, "judges": judges, **extra}))
    return path


def _judges_section(markdown: str) -> str:
    start = markdown.index("## Judges:")
    return markdown[start : markdown.index("\n## ", start + 1)]


def test_two_pointwise_judges_trained_and_untrained_give_a_png_under_the_table(
    run_dir: Path,
) -> None:
    untrained = {"alpha_interval": -0.19, "accuracy": None}
    plain = _judge("plain", agreement={"alpha_interval": 0.08}, trained=True, untrained=untrained)
    reasoning = _judge(
        "reasoning", agreement={"alpha_interval": -0.11}, trained=True, seconds_per_judgement=2.3
    )
    # "reasoning" has no untrained block: its untrained α comes from the evaluations list.
    evaluations = [{"name": "reasoning", "trained": False, "alpha_interval": 0.91}]
    _write_judges(run_dir, [plain, reasoning], evaluations=evaluations)
    result = build_report(run_dir)

    png = run_dir / FIGURE
    assert png in result.figures
    with Image.open(png) as image:
        assert image.format == "PNG" and image.width == round(PANEL_WIDTH * DPI)
        image.verify()
    section = _judges_section(result.markdown.read_text())
    assert section.index("| plain |") < section.index(f"]({FIGURE})")
    assert "untrained → trained" in section and "Left out" not in section
    assert result.html.read_text().count("data:image/png;base64,") == len(result.figures)
    judges = json.loads(result.results.read_text())["judges"]
    by_name = {j["name"]: j for j in judges}
    assert by_name["plain"]["untrained_agreement"]["alpha_interval"] == -0.19
    assert by_name["reasoning"]["untrained_agreement"]["alpha_interval"] == 0.91
    assert by_name["plain"]["left_out_of_plot"] is None
    assert by_name["plain"]["seconds_per_judgement"] == 0.3  # the table's record is kept


def test_judges_without_cost_or_agreement_are_left_out_and_named(run_dir: Path) -> None:
    judges = [
        _judge("kept", agreement={"alpha_interval": 0.5}),
        _judge("no-cost", agreement={"alpha_interval": 0.4}, seconds_per_judgement=None),
        _judge("no-alpha", agreement={"pearson": 0.7}),
        _judge("free", agreement={"alpha_interval": 0.3}, seconds_per_judgement=0.0),
    ]
    _write_judges(run_dir, judges)
    result = build_report(run_dir)
    section = _judges_section(result.markdown.read_text())
    assert (run_dir / FIGURE).is_file()
    assert "Left out of the plot" in section
    assert "`no-cost`: no cost (`seconds_per_judgement`) recorded" in section
    assert "`no-alpha`: no Krippendorff's α (interval) recorded" in section
    assert "`free`: cost recorded as 0 s per judgement" in section
    assert "`kept`" not in section.split("Left out of the plot")[1]
    left_out = {
        j["name"]: j["left_out_of_plot"] for j in json.loads(result.results.read_text())["judges"]
    }
    assert left_out["kept"] is None and "no cost" in left_out["no-cost"]


def test_no_plottable_judge_gives_no_png_and_says_why(run_dir: Path) -> None:
    build_report(run_dir)
    assert (run_dir / FIGURE).is_file()  # the synthetic run's judges are plottable
    _write_judges(
        run_dir, [_judge("blind", agreement={"alpha_interval": 0.2}, seconds_per_judgement=None)]
    )
    result = build_report(run_dir)
    assert not (run_dir / FIGURE).exists() and run_dir / FIGURE not in result.figures
    section = _judges_section(result.markdown.read_text())
    assert "No judge could be plotted — `blind`: no cost" in section


def test_no_judges_at_all_gives_no_png(run_dir: Path) -> None:
    _write_judges(run_dir, [])
    result = build_report(run_dir)
    assert not (run_dir / FIGURE).exists()
    assert "Not recorded: `judges.json` lists no judges." in result.markdown.read_text()


def test_a_pairwise_judge_is_plotted_by_its_accuracy(run_dir: Path) -> None:
    pairs = _judge("pairs", "pairwise", agreement={"alpha_interval": 0.1, "accuracy": 0.7})
    blind_pairs = _judge("blind-pairs", "pairwise", agreement={"alpha_interval": 0.6})
    pointwise = _judge("plain", agreement={"alpha_interval": 0.4, "accuracy": 0.9})
    path = _write_judges(run_dir, [pairs, blind_pairs, pointwise])
    points, left_out = plot_points(JudgesFile.load(path).judges, training_records(path))
    agreement = {p.name: (p.protocol, p.agreement) for p in points}
    assert agreement == {"pairs": ("pairwise", 0.7), "plain": ("pointwise", 0.4)}
    assert left_out == {"blind-pairs": "no pairwise accuracy recorded"}

    result = build_report(run_dir)  # a mixed run: one panel per protocol
    with Image.open(run_dir / FIGURE) as image:
        assert image.width == round(2 * PANEL_WIDTH * DPI)
    assert "`blind-pairs`: no pairwise accuracy recorded" in result.markdown.read_text()


def test_a_malformed_untrained_block_names_the_field(run_dir: Path) -> None:
    judge = _judge("plain", agreement={"alpha_interval": 0.4}, untrained={"alpha_interval": "x"})
    path = _write_judges(run_dir, [judge])
    with pytest.raises(ReportInputError, match=r"judges\[0\]\.untrained\.alpha_interval"):
        build_report(run_dir)
    assert path.is_file()
