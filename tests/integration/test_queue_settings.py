"""The stream settings reach the consumers: `judgelab serve` flags and JUDGELAB_* variables win
over the experiment's spec.runtime.queues, whose defaults are the former hard-coded values."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from judgelab import cli
from judgelab.judge_pool import main as judge_pool_main
from judgelab.queues import Consumer
from judgelab.rollout import main as rollout_main
from judgelab.rollout.server import ArmGenerator
from judgelab.serving.metrics import ServiceMetrics
from judgelab.spec import load_experiment, validate_mapping
from judgelab.spec.experiment import Experiment

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "examples" / "quickstart.yaml"


def test_spec_defaults_are_the_former_hard_coded_values() -> None:
    queues = load_experiment(QUICKSTART).spec.runtime.queues
    assert queues.judge_pool_claim_idle_ms == 60_000
    assert queues.rollout_claim_idle_ms == 600_000
    assert queues.gold_annotator_claim_idle_ms == 600_000
    assert queues.max_deliveries == 5 and queues.redis_wait_s == 60.0


@pytest.mark.parametrize("service", sorted(cli.SERVICES))
def test_serve_flags_and_environment_reach_the_service(
    service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[dict[str, Any]] = []
    monkeypatch.setitem(cli.SERVICES, service, lambda _spec, options, _j: seen.append(options))
    runner = CliRunner()
    args = ["serve", service, str(QUICKSTART), "--redis-url", "redis://127.0.0.1:1/0"]
    result = runner.invoke(cli.app, [*args, "--claim-idle-ms", "120000", "--redis-wait-s", "5"])
    assert result.exit_code == 0, result.output
    env = {"JUDGELAB_CLAIM_IDLE_MS": "70000", "JUDGELAB_REDIS_WAIT_S": "0"}
    assert runner.invoke(cli.app, args, env=env).exit_code == 0
    assert runner.invoke(cli.app, args).exit_code == 0
    picked = [(o["claim_idle_ms"], o["redis_wait_s"]) for o in seen]
    assert picked == [(120_000, 5.0), (70_000, 0.0), (None, None)]
    refused = runner.invoke(cli.app, [*args, "--claim-idle-ms", "50"])
    assert refused.exit_code == 2 and len(seen) == 3


def _experiment(queues: dict[str, Any]) -> Experiment:
    raw = yaml.safe_load(QUICKSTART.read_text())
    raw["spec"].setdefault("runtime", {})["queues"] = queues
    return validate_mapping(raw)


class _Recorded(Consumer):
    made: list[Consumer] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _Recorded.made.append(self)


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[Consumer]:
    _Recorded.made = []
    monkeypatch.setattr(judge_pool_main, "Consumer", _Recorded)
    monkeypatch.setattr(rollout_main, "Consumer", _Recorded)
    return _Recorded.made


@pytest.mark.parametrize(("flag", "expected"), [(None, 45_000), (2_000, 2_000)])
def test_judge_pool_consumers_use_the_spec_unless_a_flag_is_given(
    redis_url: str, recorded: list[Consumer], flag: int | None, expected: int
) -> None:
    experiment = _experiment({"judge_pool_claim_idle_ms": 45_000, "max_deliveries": 7})
    pool: Any = SimpleNamespace(judges=[SimpleNamespace(name="plain")])
    options = judge_pool_main.ServeOptions(redis_url=redis_url, claim_idle_ms=flag,
                                           redis_wait_s=1)  # fmt: skip
    threads = judge_pool_main.start_workers(experiment, pool, options, ServiceMetrics("t"))
    threads.stop()
    assert [(c.claim_idle_ms, c.max_deliveries) for c in recorded] == [(expected, 7)]


def test_rollout_consumers_use_the_spec_claim_timeout(
    redis_url: str, recorded: list[Consumer]
) -> None:
    from judgelab.queues import connect
    from judgelab.rollout.metrics import RolloutMetrics

    experiment = _experiment({"rollout_claim_idle_ms": 900_000, "max_deliveries": 2})
    generators = [ArmGenerator("plain", "plain", generator=SimpleNamespace())]  # type: ignore[arg-type]
    options = rollout_main.ServeOptions(redis_url=redis_url)
    client = connect(redis_url)
    metrics = RolloutMetrics(ServiceMetrics("t"))
    threads, _ = rollout_main.start_workers(experiment, generators, client, metrics, options)
    threads.stop()
    client.close()
    assert [(c.claim_idle_ms, c.max_deliveries) for c in recorded] == [(900_000, 2)]
