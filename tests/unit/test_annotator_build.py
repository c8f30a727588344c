"""Building the gold annotator from an experiment's `spec.gold`."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_annotator_cache import FakeRedis
from test_annotator_core import ScriptedEngine

from judgelab.annotator.cache import AnnotationCache
from judgelab.annotator.server import build_gold_annotator
from judgelab.judging import JudgeConfig
from judgelab.spec import Experiment, validate_mapping

QUICKSTART = Path(__file__).resolve().parents[2] / "examples" / "quickstart.yaml"
BASE = yaml.safe_load(QUICKSTART.read_text())


def experiment(**gold: Any) -> Experiment:
    data = copy.deepcopy(BASE)
    data["spec"]["gold"].update(gold)
    return validate_mapping(data, "test")


class ClosingEngine(ScriptedEngine):
    closed = False

    def close(self) -> None:
        self.closed = True


def test_the_gold_spec_sets_judge_cache_rate_limit_and_batching():
    spec = experiment(requests_per_minute=120, max_tokens=64)
    spec.spec.gold.model.max_batch_size = 3
    engine = ClosingEngine()
    core = build_gold_annotator(spec, redis=FakeRedis(), engine=engine)
    try:
        assert core.judge.config == JudgeConfig.from_gold_spec(spec.spec.gold)
        assert core.judge.config.reasoning and core.judge.config.max_new_tokens == 64
        assert isinstance(core.cache, AnnotationCache)
        assert core.cache.namespace == "jl:cache:gold"
        assert core.rate_limiter.per_minute == 120
        assert core._batcher.max_batch == 3
        assert core.per_sample_timeout_s >= 600
    finally:
        core.close()
    assert not engine.closed  # a given engine belongs to the caller


@pytest.mark.parametrize("cache, redis", [(False, FakeRedis()), (True, None)])
def test_no_cache_without_redis_or_when_the_spec_turns_it_off(cache: bool, redis: Any):
    core = build_gold_annotator(experiment(cache=cache), redis=redis, engine=ScriptedEngine())
    try:
        assert core.cache is None
        assert core.rate_limiter.unlimited
    finally:
        core.close()
