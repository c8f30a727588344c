"""The learner loop against a real redis-server: joins, acks after durable, idempotent, resumes."""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import torch

from judgelab.engines.policy_store import PolicyStore
from judgelab.engines.tiny import tiny_model, tiny_tokenizer
from judgelab.learner.feeder import PromptFeeder
from judgelab.learner.loop import LearnerLoop, LoopConfig
from judgelab.learner.publish import DirectoryPublisher
from judgelab.learner.settings import LoraSettings, TrainerSettings
from judgelab.learner.source import LEARNER_GROUP, StreamGroupSource
from judgelab.learner.trainer import GrpoTrainer
from judgelab.queues import Producer, Rollout, RolloutGroup, ScoredGroup, StreamNames, connect
from judgelab.queues.groups import text
from judgelab.queues.messages import PromptMessage
from judgelab.runtime.train_policy import read_progress
from judgelab.spec.policy import GrpoAlgorithm

NAMES = StreamNames("demo")
ARM = "arm-a"
G = 2
TOKENIZER = tiny_tokenizer()
SETTINGS = TrainerSettings(
    group_size=G,
    learning_rate=1e-2,
    max_staleness=1,
    temperature=0.7,
    seed=0,
    lora=LoraSettings(r=4, alpha=8, dropout=0.1, target_modules=("q_proj", "v_proj")),
)


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    c = connect(redis_url)
    yield c
    c.close()


def produce(client: redis.Redis, count: int, version: int = 0, start: int = 0) -> list[str]:
    producer = Producer(client)
    rng = random.Random(start)
    ids = []
    for i in range(start, start + count):
        gid = f"g{i}"
        rollouts = [
            Rollout(f"{gid}-r{k}", "x", [rng.randrange(3, len(TOKENIZER)) for _ in range(3 + k)])
            for k in range(G)
        ]
        group = RolloutGroup(
            gid, ARM, "small", f"p{i}", f"prompt {i}", None, version, rollouts, sample_s=i + 1.0
        )
        producer.add(NAMES.rollouts(ARM), group.to_fields())
        scored = ScoredGroup(
            gid,
            ARM,
            "small",
            version,
            [r.id for r in rollouts],
            [float(rng.randint(0, 9)) for _ in rollouts],
            [True] * G,
            [{"latency_s": 0.25}] * G,
        )
        producer.add(NAMES.scored(ARM), scored.to_fields())
        ids.append(gid)
    return ids


def make_loop(
    client: redis.Redis, run: Path, *, total: int, fail_at: int | None = None, every: int = 1
) -> LearnerLoop:
    trainer = GrpoTrainer(tiny_model(len(TOKENIZER), seed=0), TOKENIZER.pad_token_id, SETTINGS)
    publisher = DirectoryPublisher(run / "policy" / ARM, client, NAMES.policy_version(ARM))
    if fail_at is not None:
        publish = publisher.publish

        def failing(version: int, model: object) -> Path:
            if version == fail_at:
                raise RuntimeError("crash before the checkpoint")
            return publish(version, model)

        publisher.publish = failing  # type: ignore[method-assign]
    source = StreamGroupSource(client, NAMES, ARM, TOKENIZER)
    config = LoopConfig(
        ARM, total_steps=total, prompts_per_step=2, checkpoint_every=every, block_ms=50
    )
    return LearnerLoop(trainer, source, publisher, run / "arms" / ARM, config)


def pending(client: redis.Redis, stream: str) -> int:
    return int(client.xpending(stream, LEARNER_GROUP)["pending"])


def weights(loop: LearnerLoop) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in loop.trainer.params.items()}


def test_loop_trains_publishes_checkpoints_and_acks(client: redis.Redis, tmp_path: Path) -> None:
    ids = produce(client, 4)
    loop = make_loop(client, tmp_path, total=2)
    loop.run()
    arm_dir = tmp_path / "arms" / ARM
    lines = [json.loads(x) for x in (arm_dir / "steps.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2]
    assert [x["group_ids"] for x in lines] == [ids[:2], ids[2:]]
    assert lines[1]["staleness_max"] == 1 and lines[0]["times"]["judge"] == 0.25
    # generate: the slowest sampling batch of the step's groups (g0, g1: 1 s, 2 s).
    assert [x["times"]["generate"] for x in lines] == [2.0, 4.0]
    assert loop.control.state().metrics["times.generate"] == 4.0
    progress = json.loads((arm_dir / "progress.json").read_text())
    assert progress == {
        "step": 2,
        "total": 2,
        "arm": ARM,
        "policy_version": 2,
        "dropped_stale": 0,
        "dropped": [],
    }
    assert (arm_dir / "checkpoints" / "step-2" / "trainer.pt").is_file()
    assert pending(client, NAMES.scored(ARM)) == 0 and pending(client, NAMES.rollouts(ARM)) == 0
    assert client.smembers(NAMES.processed_set(NAMES.scored(ARM), LEARNER_GROUP)) == {
        i.encode() for i in ids
    }
    store = PolicyStore(tmp_path / "policy" / ARM, redis=client, key=NAMES.policy_version(ARM))
    assert store.latest_version() == 2 and store.versions() == [1, 2]
    assert store.published(2).kind == "lora"


def test_redelivered_groups_are_not_trained_twice(client: redis.Redis, tmp_path: Path) -> None:
    produce(client, 2)
    make_loop(client, tmp_path, total=1).run()
    produce(client, 2)  # the same group ids again (a producer retried)
    produce(client, 2, version=1, start=10)
    loop = make_loop(client, tmp_path, total=2)
    assert loop.resume() is not None and loop.trainer.version == 1
    loop.run()
    lines = (tmp_path / "arms" / ARM / "steps.jsonl").read_text().splitlines()
    assert [json.loads(x)["group_ids"] for x in lines] == [["g0", "g1"], ["g10", "g11"]]
    assert pending(client, NAMES.scored(ARM)) == 0


def test_crash_before_checkpoint_leaves_work_pending_and_resume_is_exact(
    client: redis.Redis, tmp_path: Path
) -> None:
    def produce_three_steps() -> None:
        for step in range(3):
            produce(client, 2, version=step, start=2 * step)

    produce_three_steps()
    straight = make_loop(client, tmp_path / "straight", total=3)
    straight.run()
    expected = weights(straight)
    client.flushall()

    produce_three_steps()
    crashed = make_loop(client, tmp_path / "run", total=3, fail_at=2)
    with pytest.raises(RuntimeError, match="crash"):
        crashed.run()
    # Step 1 was checkpointed and acked; step 2's groups were trained but are still pending.
    assert pending(client, NAMES.scored(ARM)) == 2 and pending(client, NAMES.rollouts(ARM)) >= 2
    resumed = make_loop(client, tmp_path / "run", total=3)
    assert resumed.resume() == tmp_path / "run" / "arms" / ARM / "checkpoints" / "step-1"
    resumed.run()
    for name, value in expected.items():
        torch.testing.assert_close(resumed.trainer.params[name].detach(), value, atol=1e-6, rtol=0)
    lines = (tmp_path / "run" / "arms" / ARM / "steps.jsonl").read_text().splitlines()
    straight_lines = (tmp_path / "straight" / "arms" / ARM / "steps.jsonl").read_text().splitlines()
    losses = [json.loads(x)["loss"] for x in lines]
    assert losses == pytest.approx([json.loads(x)["loss"] for x in straight_lines], abs=1e-6)
    assert [json.loads(x)["group_ids"] for x in lines] == [["g0", "g1"], ["g2", "g3"], ["g4", "g5"]]
    assert pending(client, NAMES.scored(ARM)) == 0


def test_too_stale_groups_are_dropped_and_acked(client: redis.Redis, tmp_path: Path) -> None:
    produce(client, 2)
    make_loop(client, tmp_path, total=1).run()
    loop = make_loop(client, tmp_path, total=3)
    loop.resume()
    produce(client, 2, version=0, start=20)  # usable at version 1 (lag 1)
    produce(client, 2, version=0, start=30)  # at version 2 these lag 2 > bound 1: dropped
    produce(client, 2, version=2, start=40)
    loop.run()
    lines = (tmp_path / "arms" / ARM / "steps.jsonl").read_text().splitlines()
    assert [json.loads(x)["group_ids"] for x in lines][1:] == [["g20", "g21"], ["g40", "g41"]]
    assert loop.dropped_total == 2 and pending(client, NAMES.scored(ARM)) == 0


def answer_prompts(client: redis.Redis, after: str, version: int, stale: dict[str, int]) -> str:
    """Play rollout generator and judge: one scored group per new prompt on the stream, sampled
    by ``version`` (``stale[prompt id]`` where given); returns the last stream id read."""
    producer = Producer(client)
    for entry_id, fields in client.xrange(NAMES.prompts, min=f"({after}"):
        message = PromptMessage.from_fields(fields)
        gid = message.id
        sampled_by = stale.get(gid, version)
        rollouts = [Rollout(f"{gid}:{sampled_by}:{k}", "x", [5 + k, 6, 7]) for k in range(G)]
        group = RolloutGroup(gid, ARM, "small", gid, message.prompt, None, sampled_by, rollouts)
        producer.add(NAMES.rollouts(ARM), group.to_fields())
        ids = [r.id for r in rollouts]
        scored = ScoredGroup(gid, ARM, "small", sampled_by, ids, [1.0, 2.0], [True] * G, [{}] * G)
        producer.add(NAMES.scored(ARM), scored.to_fields())
        after = text(entry_id)
    return after


def test_a_stale_group_is_replaced_by_the_feeder_and_the_last_step_completes(
    client: redis.Redis, tmp_path: Path
) -> None:
    """Step 3's first prompt comes back sampled by v0 while the learner is at v2 (2 > bound 1):
    the learner drops it and records it, its feeder pushes ``:retry1``, step 3 trains on it."""
    arm_dir = tmp_path / "arms" / ARM
    prompts = [{"id": f"p{k}", "prompt": f"Question {k}?"} for k in range(6)]
    algorithm = GrpoAlgorithm(name="grpo", steps=3, prompts_per_step=2, max_staleness=1)
    feeder = PromptFeeder(client, NAMES, ARM, prompts, algorithm, tmp_path / "pushed.json")
    stale = f"{ARM}:step3:p4"
    loop = make_loop(client, tmp_path, total=3)
    loop.feeder = feeder  # as learner.main --feed-prompts: the learner feeds its own prompts
    errors: list[BaseException] = []

    def run() -> None:
        try:
            loop.run()
        except BaseException as error:  # the test thread reports it
            errors.append(error)

    learner = threading.Thread(target=run, daemon=True)
    learner.start()
    after, deadline = "0", time.monotonic() + 60
    while learner.is_alive() and time.monotonic() < deadline:
        after = answer_prompts(client, after, read_progress(arm_dir), {stale: 0})
        time.sleep(0.02)
    if learner.is_alive():  # waiting for a group that never comes: stop it, then fail
        loop.control.request_stop("test timed out", False, 10.0)
    learner.join(timeout=10)
    assert time.monotonic() < deadline and not errors, errors

    lines = [json.loads(x) for x in (arm_dir / "steps.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2, 3]
    assert sorted(lines[2]["group_ids"]) == [f"{stale}:retry1", f"{ARM}:step3:p5"]
    progress = json.loads((arm_dir / "progress.json").read_text())
    assert progress["step"] == 3 and progress["dropped"] == [stale]
    assert progress["dropped_stale"] == 1 and loop.dropped_total == 1
    assert json.loads((tmp_path / "pushed.json").read_text())["replaced"] == [stale]
    assert pending(client, NAMES.scored(ARM)) == 0 and pending(client, NAMES.rollouts(ARM)) == 0
    done_ids = client.smembers(NAMES.processed_set(NAMES.scored(ARM), LEARNER_GROUP))
    assert stale.encode() in done_ids  # acked (dropped), never trained

    # The drop outlives the learner: a restarted one knows it (a redelivery is acked, not trained).
    assert make_loop(client, tmp_path, total=3).progress.was_dropped(stale)
