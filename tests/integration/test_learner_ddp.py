"""Two learner processes under torchrun (DDP, gloo, CPU) take the same steps as one process.

The test launches this file with ``torchrun --nproc_per_node N``; each rank trains the tiny model
on the same fixed global batches (read from a JSON file) and rank 0 writes its loss trajectory and
final weights. Stated tolerance: 1e-5 on every loss and KL estimate (float32 sums in another
order); 1e-4 on the weights after 3 AdamW steps at lr 1e-2, because Adam divides by the root of
the squared gradient, so a coordinate whose gradient is near 0 turns a 1e-9 difference into ~1e-5.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

STEPS, GROUPS, G = 3, 4, 4
TOLERANCE = 1e-5
WEIGHT_TOLERANCE = 1e-4


def write_data(path: Path) -> None:
    from judgelab.engines.tiny import tiny_tokenizer

    vocab = len(tiny_tokenizer())
    rng = random.Random(0)
    steps = []
    for step in range(STEPS):
        groups = []
        for g in range(GROUPS):
            groups.append(
                {
                    "group_id": f"s{step}-g{g}",
                    "policy_version": max(step - 1, 0),
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


def train(data: Path, out: Path) -> None:
    """Run by every rank (torchrun) or by one plain process."""
    import torch

    from judgelab.engines.tiny import tiny_model, tiny_tokenizer
    from judgelab.learner.batch import TrainGroup
    from judgelab.learner.distributed import init_from_env, shutdown
    from judgelab.learner.settings import LoraSettings, TrainerSettings
    from judgelab.learner.trainer import GrpoTrainer

    torch.set_num_threads(1)
    info = init_from_env()
    tokenizer = tiny_tokenizer()
    settings = TrainerSettings(
        group_size=G,
        learning_rate=1e-2,
        epsilon_low=0.2,
        epsilon_high=0.28,
        beta=0.04,
        gradient_accumulation_steps=2 // info.world_size,
        max_staleness=1,
        temperature=0.7,
        lora=LoraSettings(r=4, alpha=8, dropout=0.0, target_modules=("q_proj", "v_proj")),
    )
    trainer = GrpoTrainer(
        tiny_model(len(tokenizer), seed=0), tokenizer.pad_token_id, settings, dist_info=info
    )
    losses, kls = [], []
    for groups in json.loads(data.read_text()):
        batch = [
            TrainGroup(
                g["group_id"],
                g["policy_version"],
                tuple(g["prompt_ids"]),
                tuple(tuple(c) for c in g["completions"]),
                tuple(g["rewards"]),
            )
            for g in groups
        ]
        log = trainer.step(batch)
        losses.append(log.loss)
        kls.append(log.kl)
    if info.is_main:
        weights = {n: p.detach().flatten().tolist() for n, p in trainer.params.items()}
        out.write_text(
            json.dumps({"world": info.world_size, "losses": losses, "kl": kls, "weights": weights})
        )
    shutdown()


def run(nproc: int, data: Path, out: Path) -> dict[str, object]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if nproc == 1:
        command = [sys.executable, __file__, str(data), str(out)]
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
        ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    result: dict[str, object] = json.loads(out.read_text())
    return result


@pytest.mark.slow
def test_two_ranks_follow_the_single_process_trajectory(tmp_path: Path) -> None:
    data = tmp_path / "data.json"
    write_data(data)
    single = run(1, data, tmp_path / "single.json")
    double = run(2, data, tmp_path / "double.json")
    assert single["world"] == 1 and double["world"] == 2
    assert double["losses"] == pytest.approx(single["losses"], abs=TOLERANCE)
    assert double["kl"] == pytest.approx(single["kl"], abs=TOLERANCE)
    assert len(set(single["losses"])) == STEPS  # the trajectory moves  # type: ignore[arg-type]
    for name, values in single["weights"].items():  # type: ignore[attr-defined]
        assert double["weights"][name] == pytest.approx(values, abs=WEIGHT_TOLERANCE)  # type: ignore[index]


if __name__ == "__main__":
    train(Path(sys.argv[1]), Path(sys.argv[2]))
