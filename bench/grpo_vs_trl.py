"""GRPO throughput (issue 4): the judgelab pipeline (services + Redis) vs TRL's GRPOTrainer, same
run, same machine, then the pipeline's plumbing overhead as a share of its step time.

Both sides: the built-in SmolLM2-135M-Instruct, the 32 shortest Arena-Hard v2.0 prompts (by
characters, read from ../shared/data/arena-hard/; shortest so that neither side truncates them),
the same deterministic reward (distinct words / 48, capped at 1), G=4, 48 new tokens at
temperature 0.7, LoRA r=8 alpha=16 dropout 0.05 on every projection, lr 1e-5, beta 0, the same
steps and prompts per step. TRL: in this process, 1 torch thread (see THREADS), its own
generate(), no gradient checkpointing (judgelab's learner does not checkpoint activations
either; TRL's default is on, which would only slow it down). judgelab: redis-server,
``judgelab serve rollout-generator`` and ``python -m judgelab.learner.main`` as processes (1
torch thread each: they run at once on 2 cores), the runtime's PromptFeeder, and a stream
worker computing the rule reward in place of the judge pool (the same ``StreamWorker`` and
``Consumer``, so the same queue work). Throughput: trained completions / seconds from the
first prompt fed (all services loaded) to the last step's progress.json; TRL: the same count /
``trainer.train()`` seconds.

Plumbing overhead: every queue operation the pipeline did for one group (XADD, XREADGROUP,
the MULTI/EXEC completions, the JSON encode/decode), replayed on the run's own messages against
the same Redis, plus publishing a policy version (learner) and loading it (generator), timed on
the same model, per step, divided by the pipeline's step time. gRPC is not on the data path.

Usage: python bench/grpo_vs_trl.py [--steps 3] [--prompts-per-step 2]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from common import write_results

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "services"))
DATA = ROOT.parent / "shared" / "data" / "arena-hard" / "arena-hard-v2.0-question.jsonl"
MODEL, ARM, G, NEW_TOKENS, PROMPTS = "builtin:smollm2-135m-instruct", "plain", 4, 48, 32
LORA = {"r": 8, "alpha": 16, "dropout": 0.05}
# TRL's torch threads. 1, as each judgelab process: on this shared 2-core machine 2 OpenMP
# threads stall at every op's barrier when the other core is busy (measured: one TRL step of 4
# completions took 109 s with 2 threads and 17 s with 1).
THREADS = 1
TARGETS = {"throughput_ratio": 1.0, "plumbing_share": 0.05}


def reward(text: str) -> float:
    """The deterministic reward both sides optimise: distinct words / 48, capped at 1."""
    return min(len(set(text.lower().split())) / 48.0, 1.0)


def load_prompts() -> list[dict[str, str]]:
    lines = DATA.read_text(encoding="utf-8").split("\n")  # splitlines() also splits on U+2028
    rows = [json.loads(line) for line in lines if line.strip()]
    rows.sort(key=lambda r: (len(r["prompt"]), r["uid"]))
    return [{"id": r["uid"], "prompt": r["prompt"]} for r in rows[:PROMPTS]]


# -- TRL --------------------------------------------------------------------------------------
def run_trl(prompts: list[dict[str, str]], steps: int, per_step: int, out: Path) -> dict[str, Any]:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from judgelab.engines.builtin import ensure_builtin
    from judgelab.spec.training import LLAMA_LINEAR_MODULES

    torch.set_num_threads(THREADS)
    source = str(ensure_builtin(MODEL))
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    dataset = Dataset.from_list(
        [{"prompt": [{"role": "user", "content": p["prompt"]}]} for p in prompts]
    )
    args = GRPOConfig(
        output_dir=str(out), max_steps=steps, per_device_train_batch_size=per_step * G,
        num_generations=G, max_completion_length=NEW_TOKENS, temperature=0.7, top_p=1.0,
        learning_rate=1e-5, beta=0.0, use_cpu=True, bf16=False, gradient_checkpointing=False,
        save_strategy="no", report_to=[], logging_steps=1, seed=0, shuffle_dataset=False,
    )  # fmt: skip
    lora = LoraConfig(
        r=LORA["r"], lora_alpha=LORA["alpha"], lora_dropout=LORA["dropout"],
        target_modules=list(LLAMA_LINEAR_MODULES), task_type="CAUSAL_LM",
    )  # fmt: skip

    def rule(completions: list[Any], **_: Any) -> list[float]:
        return [reward(c[0]["content"] if isinstance(c, list) else c) for c in completions]

    trainer = GRPOTrainer(
        model=model, reward_funcs=[rule], args=args, train_dataset=dataset, peft_config=lora,
        processing_class=AutoTokenizer.from_pretrained(source),
    )  # fmt: skip
    began = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - began
    return {"seconds": seconds, "completions": steps * per_step * G, "threads": THREADS}


# -- judgelab ---------------------------------------------------------------------------------
def write_experiment(run_dir: Path, steps: int, per_step: int) -> Path:
    raw = yaml.safe_load((ROOT / "examples" / "quickstart.yaml").read_text())
    raw["metadata"]["name"] = "grpo-bench"
    spec = raw["spec"]
    spec["judges"] = [spec["judges"][0]]  # "plain": a label here, the rule worker scores
    spec["policy"]["lora"] = dict(LORA)
    spec["policy"]["generation"].update(
        {"temperature": 0.7, "top_p": 1.0, "max_new_tokens": NEW_TOKENS}
    )
    spec["policy"]["algorithm"].update(
        {"group_size": G, "steps": steps, "prompts_per_step": per_step, "learning_rate": 1e-5,
         "beta": 0.0, "max_staleness": 1}
    )  # fmt: skip
    spec["evaluation"] = {"every_n_steps": steps, "heldout_prompts": 2}  # no gold: never runs
    spec["runtime"].update({"run_dir": str(run_dir), "log_level": "info"})
    path = run_dir / "experiment.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


class RuleScorer:
    """The judge pool's stream handler with the rule reward instead of a model judge."""

    def __init__(self, names: Any) -> None:
        self.names = names

    def parse(self, delivery: Any) -> tuple[str, Any]:
        from judgelab.queues.messages import RolloutGroup

        group = RolloutGroup.from_fields(delivery.fields)
        return group.group_id, group

    def submit(self, group: Any) -> Any:
        from judgelab.queues.messages import ScoredGroup

        scored = ScoredGroup(
            group.group_id, group.arm, group.judge, group.policy_version,
            [r.id for r in group.rollouts], [reward(r.text) for r in group.rollouts],
            [True] * len(group.rollouts), [{}] * len(group.rollouts),
        )  # fmt: skip
        return lambda: [(self.names.scored(group.arm), scored.to_fields())]


def start(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    with log.open("wb") as handle:
        return subprocess.Popen(argv, stdout=handle, stderr=subprocess.STDOUT, env=env)


def wait_for(
    log: Path, text: str, process: subprocess.Popen[bytes], timeout_s: float = 600
) -> None:
    until = time.monotonic() + timeout_s
    while text not in (log.read_text(errors="replace") if log.exists() else ""):
        if process.poll() is not None or time.monotonic() > until:
            raise RuntimeError(
                f"{log.name}: no {text!r}\n{log.read_text(errors='replace')[-3000:]}"
            )
        time.sleep(0.05)


def run_judgelab(
    prompts: list[dict[str, str]], steps: int, per_step: int, tmp: Path
) -> dict[str, Any]:
    import threading

    from judgelab.learner.feeder import PromptFeeder
    from judgelab.queues import Consumer, StreamNames, connect
    from judgelab.runtime.train_policy import read_progress
    from judgelab.serving.stream_worker import StreamWorker
    from judgelab.spec.loader import load_experiment

    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    redis_log, gen_log, learner_log = tmp / "redis.log", tmp / "generator.log", tmp / "learner.log"
    redis_proc = start(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir",
                        str(tmp), "--appendonly", "yes", "--appendfsync", "everysec",
                        "--save", ""], redis_log)  # fmt: skip
    experiment_path = write_experiment(tmp, steps, per_step)
    experiment = load_experiment(experiment_path)
    py = sys.executable
    procs = [redis_proc]
    try:
        wait_for(redis_log, "Ready to accept connections", redis_proc)
        client = connect(url)
        exp = str(experiment_path)
        generator = start([py, "-m", "judgelab.cli", "serve", "rollout-generator", exp,
                           "--metrics-port", "-1", "--redis-url", url], gen_log)  # fmt: skip
        learner = start([py, "-m", "judgelab.learner.main", exp, "--arm", ARM,
                         "--redis-url", url, "--port", "0", "--metrics-port", "-1",
                         "--checkpoint-every", str(steps)], learner_log)  # fmt: skip
        procs += [generator, learner]
        names = StreamNames(experiment.metadata.name)
        stop = threading.Event()
        scorer = StreamWorker(Consumer(connect(url), names.rollouts(ARM), "judge-pool", "rule"),
                              RuleScorer(names), block_ms=100)  # fmt: skip
        threading.Thread(target=scorer.run, args=(stop,), daemon=True).start()
        wait_for(gen_log, '"service": "rollout-generator"', generator)
        wait_for(learner_log, "left pending by a previous life", learner)
        feeder = PromptFeeder(client, names, ARM, prompts, experiment.spec.policy.algorithm,
                              tmp / "pushed.json")  # fmt: skip
        arm_dir = tmp / experiment.metadata.name / "arms" / ARM
        began = time.perf_counter()
        while (done := read_progress(arm_dir)) < steps:
            if learner.poll() is not None:
                raise RuntimeError(learner_log.read_text(errors="replace")[-3000:])
            feeder.feed(done)
            time.sleep(0.01)
        seconds = time.perf_counter() - began
        lines = (arm_dir / "steps.jsonl").read_text().splitlines()
        trained = sum(int(json.loads(line)["completions"]) for line in lines if line)
        learner.wait(120)
        stop.set()
        loads = [float(s) for s in re.findall(r"loaded policy v\d+ \(lora\) in ([\d.]+) s",
                                              gen_log.read_text(errors="replace"))]  # fmt: skip
        plumbing = replay_plumbing(client, names, per_step)
        publish_s, load_s = time_policy_sync(tmp / "publish-probe")
        return {
            "seconds": seconds, "completions": trained, "step_s": seconds / steps,
            "threads": "1 (generator) + 1 (learner)", "policy_loads_logged_s": loads,
            "policy_load_s": load_s,
            "queue_and_serialisation_s_per_step": plumbing, "policy_publish_s": publish_s,
        }  # fmt: skip
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()


def replay_plumbing(client: Any, names: Any, per_step: int) -> float:
    """Seconds per step of every queue operation the pipeline does, on the run's own groups."""
    from judgelab.queues import Consumer, Producer, StreamNames
    from judgelab.queues.messages import PromptMessage, RolloutGroup, ScoredGroup

    groups = [RolloutGroup.from_fields(f) for _, f in client.xrange(names.rollouts(ARM))]
    scored = [ScoredGroup.from_fields(f) for _, f in client.xrange(names.scored(ARM))]
    prompts = [PromptMessage.from_fields(f) for _, f in client.xrange(names.prompts)]
    replay = StreamNames("plumbing-replay")
    producer = Producer(client)
    gen = Consumer(client, replay.prompts, "gen", "g")
    judge = Consumer(client, replay.rollouts(ARM), "judge", "j")
    learn_s = Consumer(client, replay.scored(ARM), "learner", "l", dead_letter=False)
    learn_r = Consumer(client, replay.rollouts(ARM), "learner", "l", dead_letter=False)
    began = time.perf_counter()
    for prompt, group, score in zip(prompts, groups, scored, strict=False):
        producer.add(replay.prompts, prompt.to_fields())
        (d,) = gen.read(1)
        message = PromptMessage.from_fields(d.fields)
        gen.complete(d, [(replay.rollouts(ARM), group.to_fields())], message.id)
        (d,) = judge.read(1)
        RolloutGroup.from_fields(d.fields)
        judge.complete(d, [(replay.scored(ARM), score.to_fields())], group.group_id)
        (ds,) = learn_s.read(1)
        ScoredGroup.from_fields(ds.fields)
        (dr,) = learn_r.read(1)
        RolloutGroup.from_fields(dr.fields)
        learn_r.complete(dr, processed_id=group.group_id)
        learn_s.complete(ds, processed_id=group.group_id)
    per_group = (time.perf_counter() - began) / max(1, min(len(groups), len(scored)))
    return per_group * per_step


def time_policy_sync(root: Path) -> tuple[float, float]:
    """Seconds to publish one LoRA version (learner) and to load it (generator), each step."""
    import copy

    from judgelab.engines.policy_store import PolicyStore, publish_policy_version
    from judgelab.engines.transformers_engine import TransformersEngine
    from judgelab.learner.policy_model import wrap_policy
    from judgelab.learner.settings import LoraSettings
    from judgelab.spec.model import ModelSpec

    engine = TransformersEngine.from_spec(ModelSpec(name=MODEL, device="cpu"))
    base = copy.deepcopy(engine.model)
    model = wrap_policy(engine.model, LoraSettings(r=LORA["r"], alpha=LORA["alpha"]))
    versions = (1, 2, 3)
    began = time.perf_counter()
    for version in versions:
        publish_policy_version(root, version, model)
    published = time.perf_counter()
    for version in versions:
        PolicyStore(root).load(version, base)
    loaded = time.perf_counter()
    return (published - began) / len(versions), (loaded - published) / len(versions)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=3, help="optimiser steps on each side")
    parser.add_argument("--prompts-per-step", type=int, default=2)
    args = parser.parse_args()
    prompts = load_prompts()
    with tempfile.TemporaryDirectory(prefix="grpo-bench-") as tmp:
        trl = run_trl(prompts, args.steps, args.prompts_per_step, Path(tmp) / "trl")
        print(f"TRL: {trl}", flush=True)
        ours = run_judgelab(prompts, args.steps, args.prompts_per_step, Path(tmp))
    trl_rate = trl["completions"] / trl["seconds"]
    our_rate = ours["completions"] / ours["seconds"]
    plumbing_s = (
        ours["queue_and_serialisation_s_per_step"]
        + ours["policy_publish_s"]
        + ours["policy_load_s"]
    )
    share = plumbing_s / ours["step_s"]
    ratio = our_rate / trl_rate
    payload = {
        "settings": {"steps": args.steps, "prompts_per_step": args.prompts_per_step, "G": G,
                     "new_tokens": NEW_TOKENS, "prompts": PROMPTS, "model": MODEL, "lora": LORA},
        "trl": {**trl, "completions_per_s": trl_rate},
        "judgelab": {**ours, "completions_per_s": our_rate, "plumbing_s_per_step": plumbing_s,
                     "grpc_s_per_step": 0.0},
        "throughput_ratio": ratio, "plumbing_share": share, "targets": TARGETS,
        "met": {"throughput_ratio": ratio >= TARGETS["throughput_ratio"],
                "plumbing_share": share <= TARGETS["plumbing_share"]},
        "load_average": os.getloadavg(),
    }  # fmt: skip
    path = write_results("grpo_vs_trl", payload)
    print(json.dumps({k: payload[k] for k in ("throughput_ratio", "plumbing_share", "met")}))
    print(f"TRL {trl_rate:.2f} completions/s, judgelab {our_rate:.2f}; wrote {path}")


if __name__ == "__main__":
    main()
