"""The Annotate unit for real: the built-in model samples the responses, the gold annotator runs
as its own `judgelab serve gold-annotator` process over a real redis-server, and a second run
(against a fresh annotator process) samples nothing and makes no gold model call."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from judgelab.spec import load_experiment
from judgelab.units.annotate import run_annotate

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "examples" / "quickstart.yaml"
SPLIT_FILES = ["judge_train", "judge_eval", "policy_train", "policy_eval"]


def small_experiment(tmp_path: Path, redis_url: str) -> Path:
    spec = yaml.safe_load(QUICKSTART.read_text())
    data = spec["spec"]["data"]
    data["splits"] = {"judge_train": 3, "judge_eval": 1, "policy_train": 2, "policy_eval": 1}
    data["responses"]["max_new_tokens"] = 16
    spec["spec"]["gold"]["max_tokens"] = 48
    spec["spec"]["judges"][1]["training"]["grpo"]["prompts_per_step"] = 2
    spec["spec"]["evaluation"]["heldout_prompts"] = 1
    spec["spec"]["runtime"]["redis_url"] = redis_url
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@contextmanager
def gold_annotator(experiment: Path) -> Iterator[dict[str, Any]]:
    """A `judgelab serve gold-annotator` process; yields its announced ports."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "judgelab.cli",
            "serve",
            "gold-annotator",
            str(experiment),
            "--grace-s",
            "5",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line:
            pytest.fail(f"the gold annotator did not start: {process.communicate()[1]}")
        yield json.loads(line)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def counter(announced: dict[str, Any], name: str) -> float:
    """Sum over labels of a counter on the annotator's /metrics (0 when never incremented)."""
    url = f"http://127.0.0.1:{announced['metrics']}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == f"{name}_total"
    )


def test_a_second_run_samples_nothing_and_makes_no_gold_model_call(
    tmp_path: Path, builtin_dir: Path, redis_url: str
) -> None:
    path = small_experiment(tmp_path, redis_url)
    experiment = load_experiment(path)
    run_dir = tmp_path / "run"
    with gold_annotator(path) as announced:
        assert announced["cached"] is True
        first = run_annotate(experiment, run_dir, gold_address=announced["grpc"])
        assert counter(announced, "judgelab_model_calls") >= 1
    assert first.responses_sampled == 4 and first.gold_cached == 0
    assert first.labelled == 4 and first.valid + first.invalid == 4
    written = {n: (run_dir / "annotate" / f"{n}.jsonl").read_text() for n in SPLIT_FILES}
    labelled = [json.loads(line) for line in written["judge_train"].splitlines()]
    assert len(labelled) == 3 and all(line["response"].strip() for line in labelled)
    valid = [line for line in labelled if line["valid"]]
    assert all(0 <= line["gold_score"] <= 9 and line["gold_reasoning"] for line in valid)
    assert all(line["gold_stamp"]["template_id"] == "pointwise-reasoning-v1" for line in labelled)

    with gold_annotator(path) as announced:  # a fresh process: only Redis remembers
        second = run_annotate(experiment, run_dir, gold_address=announced["grpc"])
        assert counter(announced, "judgelab_model_calls") == 0
        assert counter(announced, "judgelab_cache_hits") == 4
    assert second.responses_sampled == 0 and second.responses_reused == 4
    assert second.gold_cached == 4
    assert {n: (run_dir / "annotate" / f"{n}.jsonl").read_text() for n in SPLIT_FILES} == written
