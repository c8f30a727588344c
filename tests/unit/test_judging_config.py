"""Judge configs from the spec, and the config hash that keys cached judgements."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace

import pytest

from judgelab.judging import JudgeConfig, Scale, load_template
from judgelab.judging.config import FINAL_LINE_TOKENS
from judgelab.spec.judges import GoldJudgeSpec, ProxyJudgeSpec, ScoreScale
from judgelab.spec.model import ModelSpec

BASE = JudgeConfig(name="proxy", model="builtin:smollm2-135m-instruct")


def _hash(config: JudgeConfig) -> str:
    rubric = load_template(config.rubric_id) if config.rubric_id else None
    return config.config_hash(load_template(config.template_id), rubric)


def test_from_proxy_spec_copies_the_judge_fields() -> None:
    spec = ProxyJudgeSpec(
        name="proxy-r",
        model=ModelSpec(name="builtin:smollm2-135m-instruct"),
        reasoning=True,
        reasoning_budget=256,
        reference_guided=True,
        rubric=True,
        scale=ScoreScale(min=1, max=10),
    )
    config = JudgeConfig.from_proxy_spec(spec)
    assert (config.name, config.model, config.engine) == (
        "proxy-r",
        "builtin:smollm2-135m-instruct",
        "transformers",
    )
    assert config.reasoning and config.reference_guided and config.rubric
    assert config.scale == Scale(1, 10)
    assert config.template_id == "pointwise-reasoning-ref-v1"
    assert config.generation_limit == 256 + FINAL_LINE_TOKENS
    assert config.temperature == 0.0


def test_from_gold_spec_is_a_reasoning_pointwise_judge() -> None:
    spec = GoldJudgeSpec(
        model=ModelSpec(engine="openai", name="gpt-oss-120b", base_url="http://vllm:8000/v1"),
        max_tokens=4096,
    )
    config = JudgeConfig.from_gold_spec(spec)
    assert (config.name, config.protocol, config.reasoning) == ("gold", "pointwise", True)
    assert config.generation_limit == 4096
    assert config.reasoning_effort == "high"
    assert config.template_id == "pointwise-reasoning-v1"
    assert not config.prefill


def test_config_hash_is_stable_across_processes() -> None:
    code = (
        "from judgelab.judging import JudgeConfig, load_template;"
        "c = JudgeConfig(name='proxy', model='builtin:smollm2-135m-instruct');"
        "print(c.config_hash(load_template(c.template_id)))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == _hash(BASE)


@pytest.mark.parametrize(
    "change",
    [
        {"scale": Scale(0, 10)},
        {"scale": Scale(1, 9)},
        {"model": "other-model"},
        {"engine": "openai"},
        {"template": "pointwise-ref-v1", "reference_guided": True},
        {"rubric": True},
        {"model_settings": '{"dtype":"bfloat16"}'},
        {"reasoning": True},
    ],
)
def test_config_hash_changes_with_what_changes_judgements(change: dict[str, object]) -> None:
    assert _hash(replace(BASE, **change)) != _hash(BASE)


def test_config_hash_ignores_the_judge_name() -> None:
    assert _hash(replace(BASE, name="renamed")) == _hash(BASE)


def test_config_hash_refuses_a_template_it_does_not_name() -> None:
    with pytest.raises(ValueError, match="config names 'pointwise-v1'"):
        BASE.config_hash(load_template("pairwise-v1"))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"reasoning_budget": 64}, "only for reasoning judges"),
        ({"reasoning": True, "reasoning_budget": 64, "max_new_tokens": 64}, "not both"),
        ({"reasoning": True, "max_new_tokens": 0}, "max_new_tokens must be >= 1"),
        ({"temperature": -1.0}, "temperature"),
        ({"engine": "openai", "scale": Scale(0, 10)}, "scale: 0-10"),
        ({"name": ""}, "name"),
    ],
)
def test_invalid_configs_name_the_field(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        replace(BASE, **kwargs)


def test_openai_reasoning_judges_may_use_any_scale() -> None:
    config = replace(BASE, engine="openai", reasoning=True, scale=Scale(0, 10))
    assert config.scale == Scale(0, 10)
