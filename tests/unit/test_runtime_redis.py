"""Which Redis a run uses, and the message when redis-server is missing (exit 2, no traceback)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from judgelab.runtime import RedisServerMissing, Supervisor
from judgelab.runtime.redis_local import configured_redis_url, start_local_redis

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "examples" / "quickstart.yaml"


def test_redis_url_from_environment_wins_over_the_spec(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    assert configured_redis_url(None) is None
    assert configured_redis_url("redis://spec:6379/0") == "redis://spec:6379/0"
    monkeypatch.setenv("REDIS_URL", "redis://env:6379/1")
    assert configured_redis_url("redis://spec:6379/0") == "redis://env:6379/1"


def test_missing_redis_server_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("JUDGELAB_REDIS_SERVER", raising=False)
    with Supervisor(tmp_path / "logs") as supervisor, pytest.raises(RedisServerMissing) as err:
        start_local_redis(supervisor, tmp_path / "redis")
    assert "sudo apt-get install redis-server" in str(err.value)
    assert err.value.exit_code == 2


def test_run_without_redis_server_exits_2_with_the_install_command(tmp_path: Path) -> None:
    script = (
        "import sys; from pathlib import Path\n"
        "from judgelab.phases import Stage\n"
        "from judgelab.runtime import run_cli\n"
        "runners = {stage: (lambda context, unit: None) for stage in Stage}\n"
        "sys.exit(run_cli(Path(sys.argv[1]), Path(sys.argv[2]), runners))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "JUDGELAB_REDIS_SERVER")}
    env["PATH"] = str(tmp_path)  # no redis-server on it
    result = subprocess.run(
        [sys.executable, "-c", script, str(QUICKSTART), str(tmp_path / "run")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "redis-server is not installed" in result.stderr
    assert "`sudo apt-get install redis-server`" in result.stderr
    assert result.stdout == ""
