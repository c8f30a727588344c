"""The learner loop on two ranks under torchrun (gloo, CPU), with DDP and with FSDP, writes what
one process writes.

Rank 0 reads the groups, the other rank follows its orders: train on a batch, and under FSDP
(where gathering weights and every forward are collectives) join a checkpoint, a publication
and the gold evaluation's generation. The run covers each: a checkpoint asked for before the
first step (served while rank 0 collects), gold evaluations at steps 0 and 2 (greedy, scored
by length), a version published per step, a checkpoint every 2 steps, and a stop with a
checkpoint when the groups run out after 3 of the 4 steps. Tolerances as in
``test_learner_ddp``: 1e-5 on losses, 1e-4 on weights; the greedy answers are equal.
"""

from __future__ import annotations

import faulthandler
import json
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

GROUPS, G, STEPS, TOTAL = 4, 4, 3, 4
TOLERANCE = 1e-5
HANG_S = 240  # a rank still running then dumps its threads' stacks and exits
WEIGHT_TOLERANCE = 1e-4
Result = dict[str, Any]


class ListSource:
    """The step batches in order; drained, it asks the loop to stop with a checkpoint."""

    def __init__(self, groups: list[Any], control: Any) -> None:
        self.groups = groups
        self.control = control

    def read(self, count: int, block_ms: int) -> list[Any]:
        from judgelab.learner.source import Pending

        if not self.groups:
            self.control.ask_stop("drained", checkpoint_first=True)
            return []
        taken, self.groups = self.groups[:count], self.groups[count:]
        delivery: Any = SimpleNamespace(id=f"{len(self.groups)}-0")
        return [Pending(g, delivery, delivery, None) for g in taken]

    def already_done(self, group_id: str) -> bool:
        return False

    def ack(self, pending: Any) -> None:
        pass


class LengthScorer:
    """A score from the answer's length (0-9): no service needed."""

    def score(self, items: Sequence[Any]) -> list[float | None]:
        return [float(len(item.response) % 10) for item in items]


def train_groups(vocab: int) -> list[Any]:
    from judgelab.learner.batch import TrainGroup

    rng = random.Random(0)
    groups = []
    for step in range(STEPS):
        for g in range(GROUPS):
            prompt = tuple(rng.randrange(3, vocab) for _ in range(rng.randint(3, 8)))
            completions = tuple(
                tuple(rng.randrange(3, vocab) for _ in range(rng.randint(1, 7))) for _ in range(G)
            )
            rewards = tuple(float(rng.randint(0, 9)) for _ in range(G))
            version = max(step - 1 + g % 2, 0)  # rank 0's groups stale, rank 1's not
            groups.append(TrainGroup(f"s{step}-g{g}", version, prompt, completions, rewards))
    return groups


def evaluator() -> Any:
    from judgelab.engines.base import SamplingParams
    from judgelab.engines.tiny import tiny_tokenizer
    from judgelab.learner.gold_eval import EvalSettings, GoldEvaluator, HeldOutPrompt

    prompts = [HeldOutPrompt(f"e{i}", f"question {i}?") for i in range(3)]
    settings = EvalSettings(SamplingParams(max_new_tokens=6, temperature=0.0), max_batch_size=2)
    return GoldEvaluator(prompts, tiny_tokenizer(), LengthScorer(), LengthScorer(), settings)


def run_loop(out: Path, mode: str) -> None:
    """Run by every rank (torchrun) or by one plain process."""
    import torch

    from judgelab.engines.tiny import tiny_model, tiny_tokenizer
    from judgelab.learner.control import LearnerControl
    from judgelab.learner.distributed import init_from_env, shutdown
    from judgelab.learner.loop import LearnerLoop, LoopConfig
    from judgelab.learner.publish import DirectoryPublisher
    from judgelab.learner.settings import LoraSettings, TrainerSettings
    from judgelab.learner.trainer import GrpoTrainer

    torch.set_num_threads(1)
    faulthandler.dump_traceback_later(HANG_S, exit=True)  # a hung rank says where it waits
    info = init_from_env()
    tokenizer = tiny_tokenizer()
    settings = TrainerSettings(
        group_size=G,
        learning_rate=1e-2,
        beta=0.04,
        gradient_accumulation_steps=2 // info.world_size,
        temperature=0.7,
        lora=LoraSettings(r=4, alpha=8, dropout=0.0, target_modules=("q_proj", "v_proj")),
        data_parallel=mode,  # type: ignore[arg-type]
    )
    model = tiny_model(len(tokenizer), seed=0)
    trainer = GrpoTrainer(model, tokenizer.pad_token_id, settings, dist_info=info)
    control = LearnerControl(TOTAL)
    source = ListSource(train_groups(len(tokenizer)), control) if info.is_main else None
    publisher = DirectoryPublisher(out / "policy") if info.is_main else None
    config = LoopConfig(
        "arm",
        total_steps=TOTAL,
        prompts_per_step=GROUPS,
        checkpoint_every=2,
        keep_checkpoints=5,
        eval_every=2,
        block_ms=10,
    )
    loop = LearnerLoop(
        trainer,
        source,
        publisher,
        out / "arm",
        config,
        evaluator=evaluator() if info.is_main or trainer.sharded else None,
        control=control,
    )
    loop.resume()
    asked: list[tuple[str, int]] = []
    if info.is_main:  # a checkpoint request waiting before the first step
        thread = threading.Thread(
            target=lambda: asked.append(control.request_checkpoint("ask", 300))
        )
        thread.start()
        while not control._requests:
            time.sleep(0.01)
    loop.run()
    if info.is_main:
        thread.join()
    result = {
        "asked": asked,
        "stop_requested": control.stop_requested,
        "trained": len(loop.trained),
    }
    (out / f"rank{info.rank}.json").write_text(json.dumps(result))
    shutdown()
    exit_now()


def exit_now() -> None:
    """Leave without tearing down the trainer's objects: freeing DDP/FSDP state after the
    process group is gone can deadlock with a gloo worker thread (pytorch/pytorch#56297; one
    CI rehearsal hung there, after the results were written)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def launch(nproc: int, out: Path, mode: str) -> Path:
    out.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, __file__, str(out), mode]
    if nproc > 1:
        runner = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
        command = [*runner, f"--nproc_per_node={nproc}", *command[1:]]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=HANG_S + 60)
    assert done.returncode == 0, errors(done.stderr)
    return out


def steps(out: Path) -> list[Result]:
    return [json.loads(x) for x in (out / "arm" / "steps.jsonl").read_text().splitlines()]


def params(checkpoint: Path) -> dict[str, Any]:
    import torch

    state = torch.load(checkpoint / "trainer.pt", weights_only=False)
    return {name: tensor.flatten() for name, tensor in state["params"].items()}


def errors(stderr: str) -> str:
    """The ranks' own errors (first) and torchrun's summary (last), without warnings."""
    text = "\n".join(line for line in stderr.splitlines() if "warn" not in line.lower())
    return text if len(text) < 8000 else f"{text[:4000]}\n...\n{text[-4000:]}"


def assert_close(got: dict[str, Any], want: dict[str, Any]) -> None:
    assert set(got) == set(want) and want
    for name, tensor in want.items():
        assert float((got[name] - tensor).abs().max()) <= WEIGHT_TOLERANCE, name


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return launch(1, tmp_path_factory.mktemp("loop") / "single", "ddp")


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["ddp", "fsdp"])
def test_two_ranks_run_the_loop_as_one_process(single: Path, mode: str, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    double = launch(2, tmp_path / "double", mode)
    one, two = steps(single), steps(double)
    assert [x["step"] for x in two] == [x["step"] for x in one] == [0, 1, 2, 3]
    assert [x.get("loss") for x in two[1:]] == pytest.approx(
        [x.get("loss") for x in one[1:]], abs=TOLERANCE
    )
    for a, b in ((one[0], two[0]), (one[2], two[2])):  # the gold evaluations
        assert [s["response"] for s in b["eval"]["samples"]] == [
            s["response"] for s in a["eval"]["samples"]
        ]
        assert b["eval"]["gold_reward_mean"] == a["eval"]["gold_reward_mean"]
    leader = json.loads((double / "rank0.json").read_text())
    follower = json.loads((double / "rank1.json").read_text())
    assert leader["asked"][0][1] == 0 and leader["asked"][0][0].endswith("step-0")
    assert follower["stop_requested"] and follower["trained"] == STEPS * GROUPS
    names = {p.name for p in (double / "arm" / "checkpoints").iterdir()}
    assert names == {"step-0", "step-2", "step-3"}
    extra = json.loads((double / "arm" / "checkpoints" / "step-3" / "extra.json").read_text())
    assert extra["tag"] == "stop"
    for name in sorted(names):
        path = Path("arm") / "checkpoints" / name
        assert_close(params(double / path), params(single / path))
    for version in (1, 2, 3):
        adapter = Path("policy") / f"v{version}" / "adapter_model.safetensors"
        assert_close(load_file(double / adapter), load_file(single / adapter))


if __name__ == "__main__":
    run_loop(Path(sys.argv[1]), sys.argv[2])
