"""The CLI stays light: --help must not import torch, transformers or the spec models."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from judgelab.cli import app

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]


def test_help_lists_every_command() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("validate", "crd", "models", "version"):
        assert command in result.output


def test_help_imports_no_heavy_module() -> None:
    probe = textwrap.dedent(
        """
        import sys
        from judgelab.cli import app
        try:
            app(["--help"])
        except SystemExit:
            pass
        heavy = [m for m in ("torch", "transformers", "pydantic", "grpc", "judgelab.spec")
                 if m in sys.modules]
        print("HEAVY=" + ",".join(heavy))
        """
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert "HEAVY=\n" in out.stdout, out.stdout


def test_validate_accepts_the_examples() -> None:
    result = subprocess.run(
        ["judgelab", "validate", "examples/quickstart.yaml", "examples/reasoning-vs-plain.yaml"],
        capture_output=True, text=True, cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count(": ok (experiment") == 2


def test_validate_rejects_every_bad_spec_with_one_line_and_no_traceback() -> None:
    """The real console script, all bad specs at once: one stderr line each, exit code 1."""
    bad = sorted((ROOT / "tests/data/bad-specs").glob("*.yaml"))
    assert len(bad) >= 15
    result = subprocess.run(
        ["judgelab", "validate", *map(str, bad)], capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == len(bad), lines
    for path, line in zip(bad, lines, strict=True):
        assert line.startswith(f"{path}: "), line
        assert " — " in line, line  # "<where>: <bad value> — <what is allowed>"


def test_validate_names_a_missing_file() -> None:
    result = subprocess.run(
        ["judgelab", "validate", "no/such/file.yaml"], capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode == 1
    assert "no/such/file.yaml" in result.stderr and "Traceback" not in result.stderr


def test_crd_command_prints_the_checked_in_crd() -> None:
    result = subprocess.run(["judgelab", "crd"], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0
    checked_in = (ROOT / "charts/judgelab/crds/experiments.judgelab.io.yaml").read_text()
    assert result.stdout == checked_in


def test_generate_refuses_bad_input_with_one_line() -> None:
    empty = subprocess.run(["judgelab", "generate", "   "], capture_output=True, text=True)
    assert empty.returncode == 1 and empty.stderr.startswith("prompt: empty")
    no_url = subprocess.run(["judgelab", "generate", "hi", "--engine", "openai", "--model", "m"],
                            capture_output=True, text=True)
    assert no_url.returncode == 1
    assert "base_url is required" in no_url.stderr and "Traceback" not in no_url.stderr


@pytest.mark.slow
def test_generate_answers_with_the_builtin_model() -> None:
    result = subprocess.run(
        ["judgelab", "generate", "Name three primary colors.", "--max-new-tokens", "24"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.split()) >= 3
    assert "tokens, finish" in result.stderr
