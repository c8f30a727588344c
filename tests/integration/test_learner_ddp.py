"""Two learner processes under torchrun (gloo, CPU) take the same steps as one process, with
DDP and with FSDP (``data_parallel: fsdp``, FSDP2 shards).

The test launches this file with ``torchrun --nproc_per_node N``; each rank trains the tiny model
on the same fixed global batches (read from a JSON file) and rank 0 writes its loss trajectory and
final weights. Stated tolerance: 1e-5 on every loss and KL estimate (float32 sums in another
order); 1e-4 on the weights after 3 AdamW steps at lr 1e-2, because Adam divides by the root of
the squared gradient, so a coordinate whose gradient is near 0 turns a 1e-9 difference into ~1e-5.

After the 3 steps every rank checkpoints and saves the adapter, takes a 4th step, and a second
trainer resumed from the checkpoint on the same ranks takes that step again; the test then resumes
the checkpoint in one process and takes it once more: a checkpoint is whole tensors, whatever
wrote it. From step 2 on, half the groups were sampled one version back (all of rank 0's, none of
rank 1's: under FSDP, whose forwards are collectives, both ranks still run the old version's), so
the 4th step's importance ratios read the version history the checkpoint carries.
"""

from __future__ import annotations

import faulthandler
import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

STEPS, GROUPS, G = 3, 4, 4
TOLERANCE = 1e-5
HANG_S = 240  # a rank still running then dumps its threads' stacks and exits
WEIGHT_TOLERANCE = 1e-4
MODES = ("ddp", "fsdp")
Result = dict[str, Any]


def write_data(path: Path) -> None:
    from judgelab.engines.tiny import tiny_tokenizer

    vocab = len(tiny_tokenizer())
    rng = random.Random(0)
    steps = []
    for step in range(STEPS + 1):  # the last one is taken after the checkpoint
        groups = []
        for g in range(GROUPS):
            groups.append(
                {
                    "group_id": f"s{step}-g{g}",
                    # Rank 0 (groups 0, 2) has the stale ones, rank 1 none.
                    "policy_version": max(step - 1 + g % 2, 0),
                    "prompt_ids": [rng.randrange(3, vocab) for _ in range(rng.randint(3, 8))],
                    "completions": [
                        [rng.randrange(3, vocab) for _ in range(rng.randint(1, 7))]
                        for _ in range(G)
                    ],
                    "rewards": [float(rng.randint(0, 9)) for _ in range(G)],
                }
            )
        steps.append(groups)
    path.write_text(json.dumps(steps))


def new_trainer(world_size: int, mode: str, dist_info: Any = None, lora: bool = True) -> Any:
    from judgelab.engines.tiny import tiny_model, tiny_tokenizer
    from judgelab.learner.settings import LoraSettings, TrainerSettings
    from judgelab.learner.trainer import GrpoTrainer

    tokenizer = tiny_tokenizer()
    settings = TrainerSettings(
        group_size=G,
        learning_rate=1e-2 if lora else 1e-3,
        epsilon_low=0.2,
        epsilon_high=0.28,
        beta=0.04,
        gradient_accumulation_steps=2 // world_size,
        max_staleness=1,
        temperature=0.7,
        lora=LoraSettings(r=4, alpha=8, dropout=0.0, target_modules=("q_proj", "v_proj"))
        if lora
        else LoraSettings(enabled=False),
        data_parallel=mode,  # type: ignore[arg-type]
    )
    model = tiny_model(len(tokenizer), seed=0)
    return GrpoTrainer(model, tokenizer.pad_token_id, settings, dist_info=dist_info)


def batches(data: Path) -> list[Any]:
    from judgelab.learner.batch import TrainGroup

    return [
        [
            TrainGroup(
                g["group_id"],
                g["policy_version"],
                tuple(g["prompt_ids"]),
                tuple(tuple(c) for c in g["completions"]),
                tuple(g["rewards"]),
            )
            for g in groups
        ]
        for groups in json.loads(data.read_text())
    ]


def weights(trainer: Any) -> dict[str, list[float]]:
    """The trainable weights, whole (a collective under FSDP: every rank calls it)."""
    return {n: t.flatten().tolist() for n, t in trainer.state()["params"].items()}


def train(data: Path, out: Path, mode: str) -> None:
    """Run by every rank (torchrun) or by one plain process."""
    import torch

    from judgelab.learner.distributed import init_from_env, shutdown

    torch.set_num_threads(1)
    faulthandler.dump_traceback_later(HANG_S, exit=True)  # a hung rank says where it waits
    info = init_from_env()
    trainer = new_trainer(info.world_size, mode, info)
    *trained, after = batches(data)
    losses, kls = [], []
    for batch in trained:
        log = trainer.step(batch)
        losses.append(log.loss)
        kls.append(log.kl)
    saved = weights(trainer)
    path = trainer.save_checkpoint(out.parent / f"run-{info.world_size}-{mode}")
    trainer.save_adapter(out.parent / f"adapter-{info.world_size}-{mode}")
    next_loss = trainer.step(after).loss
    resumed = new_trainer(info.world_size, mode, info)
    resumed.resume(path)
    resumed_loss = resumed.step(after).loss
    full = train_full(data, info, mode, out.parent / f"full-{info.world_size}-{mode}")
    result = {
        "world": info.world_size,
        "sharded": trainer.sharded,
        "losses": losses,
        "kl": kls,
        "weights": saved,
        "checkpoint": str(path),
        "next": {"loss": next_loss, "weights": weights(trainer)},
        "resumed": {"loss": resumed_loss, "weights": weights(resumed)},
        "full": full,
    }
    if info.is_main:
        out.write_text(json.dumps(result))
    shutdown()
    # Leave without tearing down DDP/FSDP state after the process group is gone: that can
    # deadlock with a gloo worker thread (pytorch/pytorch#56297; see test_learner_loop_ranks).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def train_full(data: Path, info: Any, mode: str, saved: Path) -> Result:
    """Full fine-tuning (every weight trains, the reference is a frozen copy) over all batches;
    its whole weights saved as transformers does."""
    trainer = new_trainer(info.world_size, mode, info, lora=False)
    logs = [trainer.step(batch) for batch in batches(data)]
    trainer.save_adapter(saved)
    return {
        "losses": [g.loss for g in logs],
        "kl": [g.kl for g in logs],
        "weights": weights(trainer),
    }


def run(nproc: int, data: Path, out: Path, mode: str) -> Result:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if nproc == 1:
        command = [sys.executable, __file__, str(data), str(out), mode]
    else:
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={nproc}",
            __file__,
            str(data),
            str(out),
            mode,
        ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=HANG_S + 60)
    assert done.returncode == 0, errors(done.stderr)  # a rank's error comes first
    result: Result = json.loads(out.read_text())
    return result


def errors(stderr: str) -> str:
    """The ranks' own errors (first) and torchrun's summary (last), without warnings."""
    text = "\n".join(line for line in stderr.splitlines() if "warn" not in line.lower())
    return text if len(text) < 8000 else f"{text[:4000]}\n...\n{text[-4000:]}"


def assert_close(got: dict[str, list[float]], want: dict[str, list[float]], abs: float) -> None:
    assert set(got) == set(want)
    for name, values in want.items():
        assert got[name] == pytest.approx(values, abs=abs), name


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Result]:
    """One plain process (the data-parallel mode does not matter there): data file, result."""
    root = tmp_path_factory.mktemp("learner-dp")
    data = root / "data.json"
    write_data(data)
    return data, run(1, data, root / "single.json", "ddp")


@pytest.fixture(scope="module", params=MODES)
def double(request: pytest.FixtureRequest, single: tuple[Path, Result]) -> tuple[str, Result]:
    """Two ranks under torchrun, once per mode: the mode, the result."""
    data, _ = single
    mode: str = request.param
    return mode, run(2, data, data.parent / f"double-{mode}.json", mode)


@pytest.mark.slow
def test_two_ranks_follow_the_single_process_trajectory(
    single: tuple[Path, Result], double: tuple[str, Result]
) -> None:
    (_, one), (mode, two) = single, double
    assert one["world"] == 1 and two["world"] == 2
    assert two["sharded"] == (mode == "fsdp") and not one["sharded"]
    assert two["losses"] == pytest.approx(one["losses"], abs=TOLERANCE)
    assert two["kl"] == pytest.approx(one["kl"], abs=TOLERANCE)
    assert len(set(one["losses"])) == STEPS  # the trajectory moves
    assert_close(two["weights"], one["weights"], WEIGHT_TOLERANCE)
    assert two["next"]["loss"] == pytest.approx(one["next"]["loss"], abs=TOLERANCE)
    assert_close(two["next"]["weights"], one["next"]["weights"], WEIGHT_TOLERANCE)
    # Resumed on the same ranks, the 4th step is the one taken without a break.
    assert two["resumed"]["loss"] == pytest.approx(two["next"]["loss"], abs=1e-7)
    assert_close(two["resumed"]["weights"], two["next"]["weights"], 1e-7)


@pytest.mark.slow
def test_full_fine_tuning_on_two_ranks_follows_one_process(
    single: tuple[Path, Result], double: tuple[str, Result]
) -> None:
    """Every weight trains (FSDP: the root unit's too, swapped for the stale versions)."""
    from safetensors.torch import load_file

    (data, one), (mode, two) = single, double
    assert two["full"]["losses"] == pytest.approx(one["full"]["losses"], abs=TOLERANCE)
    assert two["full"]["kl"] == pytest.approx(one["full"]["kl"], abs=TOLERANCE)
    assert_close(two["full"]["weights"], one["full"]["weights"], WEIGHT_TOLERANCE)
    want = load_file(data.parent / "full-1-ddp" / "model.safetensors")
    got = load_file(data.parent / f"full-2-{mode}" / "model.safetensors")
    assert set(got) == set(want) and "lm_head.weight" in want
    for name, tensor in want.items():
        assert float((got[name] - tensor).abs().max()) <= WEIGHT_TOLERANCE, name


@pytest.mark.slow
def test_a_two_rank_checkpoint_resumes_in_one_process(
    single: tuple[Path, Result], double: tuple[str, Result]
) -> None:
    (data, _), (mode, two) = single, double
    trainer = new_trainer(1, mode)
    trainer.resume(Path(two["checkpoint"]))
    assert trainer.version == STEPS and set(trainer.history) == {STEPS - 1}
    assert weights(trainer) == two["weights"]  # whole tensors, exactly
    loss = trainer.step(batches(data)[-1]).loss
    assert loss == pytest.approx(two["next"]["loss"], abs=TOLERANCE)
    assert_close(weights(trainer), two["next"]["weights"], WEIGHT_TOLERANCE)


@pytest.mark.slow
def test_two_ranks_save_the_adapter_one_process_saves(
    single: tuple[Path, Result], double: tuple[str, Result]
) -> None:
    from safetensors.torch import load_file

    (data, _), (mode, _) = single, double
    one, two = data.parent / "adapter-1-ddp", data.parent / f"adapter-2-{mode}"
    assert (two / "adapter_config.json").is_file()
    want = load_file(one / "adapter_model.safetensors")
    got = load_file(two / "adapter_model.safetensors")
    assert set(got) == set(want) and want
    for name, tensor in want.items():
        assert got[name].shape == tensor.shape
        assert float((got[name] - tensor).abs().max()) <= WEIGHT_TOLERANCE, name


if __name__ == "__main__":
    train(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else "ddp")
