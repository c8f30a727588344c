"""The CLI stays light: --help must not import torch, transformers or the spec models."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from typer.testing import CliRunner

from judgelab.cli import app

runner = CliRunner()


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
