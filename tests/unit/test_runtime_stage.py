"""The Annotate/Evaluate Job entry point: the chart's flags, clear errors, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from judgelab.runtime.stage import parse_args, required_address

QUICKSTART = Path(__file__).resolve().parents[2] / "examples" / "quickstart.yaml"


def test_the_charts_flags_are_accepted() -> None:
    args = parse_args([str(QUICKSTART), "--stage=annotate", "--unit=gold", "--metrics-port=9090"])
    assert (args.stage, args.unit) == ("annotate", "gold")
    with pytest.raises(SystemExit):
        parse_args([str(QUICKSTART), "--stage=train-policy", "--unit=a"])


def test_a_missing_service_address_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JUDGELAB_GOLD_ADDRESS", raising=False)
    with pytest.raises(SystemExit, match="JUDGELAB_GOLD_ADDRESS is not set"):
        required_address("JUDGELAB_GOLD_ADDRESS")
    monkeypatch.setenv("JUDGELAB_GOLD_ADDRESS", "gold:50051")
    assert required_address("JUDGELAB_GOLD_ADDRESS") == "gold:50051"


def test_the_job_fails_with_one_line_when_the_service_is_unset() -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "services"),
    }
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "judgelab.runtime.stage",
            str(QUICKSTART),
            "--stage=evaluate",
            "--unit=report",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 1
    assert "JUDGELAB_GOLD_ADDRESS is not set" in done.stderr and "Traceback" not in done.stderr
