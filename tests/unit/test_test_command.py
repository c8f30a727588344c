"""The README's test command must fail when pytest runs no test (pytest's exit code 5)."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_no_tests_ran_is_a_failure() -> None:
    result = subprocess.run(
        ["bash", "scripts/test.sh", "-q", "-k", "no_test_has_this_name_at_all",
         "tests/unit/test_cli.py"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "no tests ran" in result.stderr


def test_a_failing_test_is_a_failure(tmp_path: Path) -> None:
    failing = tmp_path / "test_fails.py"
    failing.write_text("def test_fails():\n    assert 1 == 2\n")
    result = subprocess.run(
        ["bash", "scripts/test.sh", "-q", "-p", "no:cacheprovider", str(failing)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 1, result.stdout
