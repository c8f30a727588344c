"""FSDP's pieces that need no second process: the choice in the spec, the units, and tensors
between sharded and whole form (on a one-rank gloo group). Two ranks: the integration test
``test_learner_ddp``."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.tensor import DTensor

from judgelab.engines.tiny import tiny_model, tiny_tokenizer
from judgelab.learner import sharding
from judgelab.learner.distributed import DistInfo, init_from_env
from judgelab.learner.policy_model import wrap_policy
from judgelab.learner.settings import LoraSettings, TrainerSettings, settings_from_spec
from judgelab.learner.trainer import GrpoTrainer
from judgelab.spec import SpecError, validate_mapping
from tests.unit.test_learner_trainer import PAD, VOCAB, groups
from tests.unit.test_spec import minimal

LORA = LoraSettings(r=4, alpha=8, dropout=0.0, target_modules=("q_proj", "v_proj"))


def _grpo(**algorithm: object) -> dict[str, object]:
    doc = minimal()
    doc["spec"]["policy"]["algorithm"].update(algorithm)
    return doc


def test_data_parallel_defaults_to_ddp_and_reaches_the_trainer_settings() -> None:
    spec = validate_mapping(_grpo()).spec
    assert settings_from_spec(spec.policy, seed=0).data_parallel == "ddp"
    spec = validate_mapping(_grpo(data_parallel="fsdp")).spec
    assert settings_from_spec(spec.policy, seed=0).data_parallel == "fsdp"
    assert TrainerSettings().data_parallel == "ddp"


def test_an_unknown_data_parallel_mode_is_refused() -> None:
    with pytest.raises(SpecError, match="data_parallel"):
        validate_mapping(_grpo(data_parallel="zero3"))


def test_the_units_are_the_decoder_layers_through_the_peft_wrapper() -> None:
    model = tiny_model(VOCAB, seed=0)
    policy = wrap_policy(model, LORA)
    inner = sharding.inner_model(policy)
    assert inner is model
    assert sharding.inner_model(model) is model
    layers = sharding.decoder_layers(inner)
    assert layers == list(model.model.layers)
    assert [type(m).__name__ for m in layers] == ["LlamaDecoderLayer"] * 2


class _InnerDecoderLayer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(2, 2)


class OuterDecoderLayer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inner = _InnerDecoderLayer()


def test_only_the_outermost_decoder_layers_are_units() -> None:
    model = nn.Sequential(OuterDecoderLayer(), nn.Linear(2, 2), OuterDecoderLayer())
    assert sharding.decoder_layers(model) == [model[0], model[2]]
    assert sharding.decoder_layers(nn.Linear(2, 2)) == []


def test_unsharded_tensors_pass_through_unchanged() -> None:
    tensor = torch.ones(3)
    assert sharding.full(tensor) is tensor
    assert sharding.like(tensor, torch.zeros(3)) is tensor
    tree = {"a": [tensor, (tensor, 1)], "b": "x"}
    assert sharding.full_tree(tree) == {"a": [tensor, (tensor, 1)], "b": "x"}


def test_fsdp_in_one_process_is_the_plain_trainer() -> None:
    base = TrainerSettings(group_size=4, learning_rate=1e-2, lora=LORA)
    fsdp = dataclasses.replace(base, data_parallel="fsdp")
    plain = GrpoTrainer(tiny_model(VOCAB, seed=0), PAD, base, dist_info=DistInfo())
    alone = GrpoTrainer(tiny_model(VOCAB, seed=0), PAD, fsdp, dist_info=DistInfo())
    assert not alone.sharded and alone.model is alone.policy
    batch = groups(2, seed=1)
    assert alone.step(batch).loss == plain.step(batch).loss


@pytest.fixture
def one_rank_group(tmp_path: Path) -> Iterator[None]:
    """A gloo process group of one rank in this process, gone afterwards."""
    assert not dist.is_initialized()
    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


@pytest.mark.usefixtures("one_rank_group")
def test_sharded_weights_and_adam_state_go_whole_and_back() -> None:
    torch.manual_seed(0)
    policy = wrap_policy(tiny_model(len(tiny_tokenizer()), seed=0), LORA)
    sharding.shard(sharding.inner_model(policy))
    params = {n: p for n, p in policy.named_parameters() if p.requires_grad}
    assert params and all(isinstance(p, DTensor) for p in params.values())
    param = next(iter(params.values()))
    assert isinstance(param, DTensor)
    whole = sharding.full(param)
    assert not isinstance(whole, DTensor) and whole.shape == param.shape
    back = sharding.like(whole + 1, param)
    assert isinstance(back, DTensor) and back.placements == param.placements
    assert torch.equal(sharding.full(back), whole + 1)

    optimizer = torch.optim.AdamW(list(params.values()), lr=1e-2)
    policy(input_ids=torch.tensor([[5, 6, 7]])).logits.sum().backward()
    sharding.set_gradient_sync(policy, True)
    optimizer.step()
    saved = sharding.full_tree(optimizer.state_dict())
    moments = saved["state"][0]["exp_avg"]
    assert not isinstance(moments, DTensor) and moments.shape == param.shape
    optimizer.load_state_dict(saved)
    sharding.shard_optimizer_state(optimizer)
    state = optimizer.state[param]
    assert isinstance(state["exp_avg"], DTensor) and not isinstance(state["step"], DTensor)
    assert torch.equal(sharding.full(state["exp_avg"]), moments)
    optimizer.step()  # the moments are usable again


def test_cuda_ranks_take_their_local_gpu_and_nccl_for_cuda_tensors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No GPU here: the calls torchrun's CUDA processes would make, recorded."""
    calls: list[object] = []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(torch.cuda, "set_device", calls.append)
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda backend: calls.append(backend))
    monkeypatch.setattr(dist, "get_rank", lambda: 1)
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    assert init_from_env(torch.device("cuda")) == DistInfo(rank=1, world_size=2)
    assert calls == [1, "cpu:gloo,cuda:nccl"]
    calls.clear()
    init_from_env(torch.device("cpu"))
    assert calls == ["gloo"]


@pytest.mark.usefixtures("one_rank_group")
def test_a_sharded_model_keeps_the_library_forwards() -> None:
    from judgelab.engines import fused_ops

    model = tiny_model(len(tiny_tokenizer()), seed=0)
    sharding.shard(sharding.inner_model(model))
    assert fused_ops.fuse(model) == 0  # a module's forward is a collective there
    assert fused_ops.fuse(tiny_model(len(tiny_tokenizer()), seed=0)) > 0
