"""build_report on synthetic run directories: files, sections, finite numbers, clear errors."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from judgelab.cli import app
from judgelab.evaluation.report import ReportInputError, ReportOptions, build_report
from judgelab.evaluation.report.synthetic import write_synthetic_run

SECTIONS = (
    "## Inputs",
    "## Proxy and gold reward over training",
    "## Gold reward against KL distance (Gao et al. fit)",
    "## Judges: agreement with gold, invalid rate, cost",
    "## Cross-judge matrix",
    "## Pairwise win rate against the baseline",
    "## Adversarial patterns in the policy's outputs",
    "## Sample outputs, start vs end of training",
)


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return write_synthetic_run(tmp_path / "run", noise=0.02)


def _numbers(value: Any) -> list[float]:
    if isinstance(value, dict):
        return [n for v in value.values() for n in _numbers(v)]
    if isinstance(value, list):
        return [n for v in value for n in _numbers(v)]
    return [float(value)] if isinstance(value, int | float) and not isinstance(value, bool) else []


def _strict_json(path: Path) -> Any:
    def refuse(name: str) -> None:
        raise AssertionError(f"{path} holds {name}")

    return json.loads(path.read_text(), parse_constant=refuse)


def test_full_report_writes_every_file_and_section(run_dir: Path) -> None:
    result = build_report(run_dir)
    for path in result.paths():
        assert path.is_file() and path.stat().st_size > 0, path
    assert len(result.figures) == 6
    assert all(p.parent == run_dir / "report" and p.suffix == ".png" for p in result.figures)
    markdown = result.markdown.read_text()
    for heading in SECTIONS:
        assert heading in markdown
    assert "Not recorded" not in markdown
    html = result.html.read_text()
    assert html.count("data:image/png;base64,") == 6 and 'src="report/' not in html


def test_results_hold_the_numbers_shown_and_all_are_finite(run_dir: Path) -> None:
    results = _strict_json(build_report(run_dir).results)
    assert all(math.isfinite(n) for n in _numbers(results))
    hacked, honest = results["training"]["plain-judge"], results["training"]["reasoning-judge"]
    assert hacked["hacking_onset"]["step"] is not None and hacked["best_gold"]["step"] == 30
    assert honest["hacking_onset"]["step"] is None and honest["best_gold"]["step"] == 100
    fit = results["gao_fit"]["plain-judge"]
    assert fit["alpha"] == pytest.approx(1.2, abs=0.1) and fit["beta"] == pytest.approx(1.5, 0.1)
    win = results["pairwise"]["arms"]["plain-judge"]
    assert win["low"] <= win["rate"] <= win["high"]
    patterns = results["adversarial_patterns"]["plain-judge"]
    assert patterns["start"]["counts"]["fake_end_marker"] == 0
    assert patterns["end"]["counts"]["fake_end_marker"] == patterns["end"]["n"] == 4
    assert (
        results["cross_scores"]["gold"]["plain-judge"]
        < results["cross_scores"]["plain-judge"]["plain-judge"]
    )
    markdown = (run_dir / "report.md").read_text()
    assert f"{fit['alpha']:.4f}" in markdown and f"{win['rate']:.3f}" in markdown


def test_report_is_deterministic(run_dir: Path) -> None:
    first = build_report(run_dir).results.read_text()
    assert build_report(run_dir).results.read_text() == first


def test_missing_inputs_give_not_recorded_sections(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    result = build_report(empty)
    markdown = result.markdown.read_text()
    for heading in SECTIONS:
        assert heading in markdown
    assert markdown.count("Not recorded:") == len(SECTIONS) - 1
    assert result.figures == ()
    results = _strict_json(result.results)
    assert set(results["sections"].values()) == {"ok", "not recorded"}


def test_partly_recorded_run_keeps_what_is_there(run_dir: Path) -> None:
    (run_dir / "judges.json").unlink()
    (run_dir / "evaluate" / "pairwise.json").unlink()
    result = build_report(run_dir)
    markdown = result.markdown.read_text()
    assert "Not recorded: `judges.json` is missing" in markdown
    assert "Not recorded: `evaluate/pairwise.json` is missing" in markdown
    assert len(result.figures) == 4


def test_few_evals_and_nan_values_degrade_without_a_traceback(tmp_path: Path) -> None:
    steps = tmp_path / "run" / "arms" / "solo" / "steps.jsonl"
    steps.parent.mkdir(parents=True)
    lines = [
        {
            "step": 0,
            "proxy_reward_mean": 4.0,
            "kl": 0.0,
            "eval": {"gold_reward_mean": 4.0, "proxy_reward_mean": 4.0},
        },
        {"step": 1, "proxy_reward_mean": float("nan"), "kl": float("inf"), "entropy": None},
        {
            "step": 2,
            "proxy_reward_mean": 4.5,
            "kl": 0.1,
            "eval": {"gold_reward_mean": 4.2, "proxy_reward_mean": None},
        },
    ]
    steps.write_text("".join(json.dumps(line) + "\n" for line in lines))
    result = build_report(tmp_path / "run")
    results = _strict_json(result.results)
    assert results["gao_fit"]["solo"]["status"] == "not enough points"
    assert results["gao_fit"]["solo"]["alpha"] is None
    assert "not enough points" in result.markdown.read_text()


@pytest.mark.parametrize(
    ("relative", "line_text", "message"),
    [
        ("arms/plain-judge/steps.jsonl", '{"step": 3, "kl": 0.1', "not valid JSON"),
        ("arms/plain-judge/steps.jsonl", '{"step": 3, "kl": 0.1}', "proxy_reward_mean: missing"),
        (
            "arms/plain-judge/steps.jsonl",
            '{"step": "x", "kl": 0, "proxy_reward_mean": 1}',
            "step: expected an integer",
        ),
        (
            "evaluate/outputs/plain-judge.jsonl",
            '{"prompt": "p", "response": "r", "stage": "mid"}',
            "stage: must be one of",
        ),
    ],
)
def test_a_malformed_line_names_the_file_and_line(
    run_dir: Path, relative: str, line_text: str, message: str
) -> None:
    path = run_dir / relative
    lines = path.read_text().splitlines()
    lines.insert(2, line_text)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ReportInputError) as caught:
        build_report(run_dir)
    assert str(caught.value).startswith(f"{path}:3: ")
    assert message in str(caught.value)


def test_a_repeated_step_names_both_lines(run_dir: Path) -> None:
    path = run_dir / "arms" / "plain-judge" / "steps.jsonl"
    first = path.read_text().splitlines()[0]
    path.write_text(path.read_text() + first + "\n")
    with pytest.raises(
        ReportInputError, match=r"steps.jsonl:102: step 0 already recorded on line 1"
    ):
        build_report(run_dir)


def test_malformed_json_files_name_the_file_line_and_field(run_dir: Path) -> None:
    judges = run_dir / "judges.json"
    judges.write_text('{\n  "judges": [\n    {"name": "a",, }\n  ]\n}\n')
    with pytest.raises(ReportInputError, match=rf"^{judges}:3: not valid JSON"):
        build_report(run_dir)
    judges.write_text(json.dumps({"judges": [{"name": "a", "invalid_rate": 1.5}]}))
    with pytest.raises(ReportInputError, match=r"judges\[0\]\.invalid_rate: must be in"):
        build_report(run_dir)
    pairwise = run_dir / "evaluate" / "pairwise.json"
    judges.unlink()
    pairwise.write_text(json.dumps({"arms": {"plain-judge": ["win", "draw"]}}))
    with pytest.raises(ReportInputError, match=r"arms\.plain-judge\[1\]: expected win/tie/loss"):
        build_report(run_dir)


def test_options_margin_changes_the_onset(run_dir: Path) -> None:
    strict = _strict_json(build_report(run_dir, ReportOptions(onset_margin_fraction=0.5)).results)
    assert strict["training"]["plain-judge"]["hacking_onset"]["step"] is None


def test_cli_report_prints_the_paths_written(run_dir: Path) -> None:
    result = CliRunner().invoke(app, ["report", str(run_dir)])
    assert result.exit_code == 0, result.output
    printed = result.output.splitlines()
    assert str(run_dir / "report.md") in printed and str(run_dir / "results.json") in printed
    assert all(Path(line).is_file() for line in printed) and len(printed) == 9


def test_cli_report_names_a_malformed_file_without_traceback(run_dir: Path) -> None:
    (run_dir / "evaluate" / "cross_scores.json").write_text("{oops")
    result = CliRunner().invoke(app, ["report", str(run_dir)])
    assert result.exit_code == 1
    assert "cross_scores.json:1: not valid JSON" in result.output
    assert "Traceback" not in result.output
