"""A plain LoRA adapter merged without peft gives peft's merged weights; others go to peft."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model

from judgelab.engines.lora_merge import CONFIG_FILE, merged_copy
from judgelab.engines.transformers_engine import TransformersEngine


def _saved_adapter(base: Any, path: Path, **options: Any) -> Path:
    config = LoraConfig(r=4, lora_alpha=16, target_modules="all-linear", **options)
    adapted = get_peft_model(copy.deepcopy(base), config)
    with torch.no_grad():  # peft starts B at zero: make the adapter do something
        for name, param in adapted.named_parameters():
            if "lora_" in name:
                param.normal_(0.0, 0.05, generator=torch.Generator().manual_seed(len(name)))
    adapted.save_pretrained(str(path))
    return path


def _peft_merged(base: Any, path: Path) -> Any:
    return PeftModel.from_pretrained(copy.deepcopy(base), str(path)).merge_and_unload()


@pytest.mark.parametrize("rslora", [False, True])
def test_merged_weights_equal_peft_merge(
    tiny_engine: TransformersEngine, tmp_path: Path, rslora: bool
) -> None:
    base = tiny_engine.model
    before = {k: v.clone() for k, v in base.state_dict().items()}
    path = _saved_adapter(base, tmp_path / "v1", use_rslora=rslora)
    ours = merged_copy(base, path)
    assert ours is not None
    expected = _peft_merged(base, path).state_dict()
    got = ours.state_dict()
    assert got.keys() == expected.keys()
    changed = 0
    for key, value in expected.items():
        torch.testing.assert_close(got[key], value, rtol=0, atol=1e-6)
        changed += not torch.equal(value, before[key])
    assert changed >= 4  # the adapter moved the linear layers
    for key, value in base.state_dict().items():  # the base is untouched
        assert torch.equal(value, before[key])


@pytest.mark.parametrize(
    "change", [{"use_dora": True}, {"rank_pattern": {"q_proj": 2}}, {"bias": "all"}]
)
def test_adapters_that_are_not_plain_lora_go_through_peft(
    tiny_engine: TransformersEngine, tmp_path: Path, change: dict[str, Any]
) -> None:
    path = _saved_adapter(tiny_engine.model, tmp_path / "v1")
    config = json.loads((path / CONFIG_FILE).read_text())
    (path / CONFIG_FILE).write_text(json.dumps({**config, **change}))
    assert merged_copy(tiny_engine.model, path) is None
