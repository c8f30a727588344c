"""The judge pool serves a judge's trained LoRA adapter once TrainJudges has written one."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from judgelab.engines.adapters import judge_adapter_dir
from judgelab.judge_pool.server import build_judge_pool
from judgelab.judging import Sample
from judgelab.spec import Experiment, validate_mapping

if TYPE_CHECKING:
    from judgelab.engines.transformers_engine import TransformersEngine

QUICKSTART = Path(__file__).resolve().parents[2] / "examples" / "quickstart.yaml"


def _experiment(run_dir: Path) -> Experiment:
    data = yaml.safe_load(QUICKSTART.read_text())
    data["spec"]["runtime"]["run_dir"] = str(run_dir)
    return validate_mapping(data, "test")


def _save_adapter(engine: TransformersEngine, target: Path) -> None:
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(copy.deepcopy(engine.model), config).save_pretrained(str(target))


def _expected(pool_engine_judge: object) -> float:
    sample = Sample("s", "Capital of France?", "Paris.")
    return pool_engine_judge.judge([sample])[0].expected  # type: ignore[attr-defined]


def test_a_judge_with_a_trained_adapter_is_served_with_it_merged(
    tiny_engine: TransformersEngine, tmp_path: Path
) -> None:
    experiment = _experiment(tmp_path)
    _save_adapter(tiny_engine, judge_adapter_dir(tmp_path / "quickstart", "plain"))
    pool = build_judge_pool(experiment, engine_factory=lambda _: tiny_engine)
    try:
        trained, untrained = pool.get("plain").judge, pool.get("reasoning").judge
        assert trained.engine is not tiny_engine and untrained.engine is tiny_engine
        assert trained.engine.name.endswith("+trained")
        base = build_judge_pool(
            _experiment(tmp_path / "elsewhere"), engine_factory=lambda _: tiny_engine
        )
        try:
            assert _expected(trained) != _expected(base.get("plain").judge)
        finally:
            base.close()
    finally:
        pool.close()
