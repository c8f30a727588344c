"""The learner's own recovery paths on a real redis-server (tiny model, in-process): a learner
killed between its two acks of a group, and the watchdog for groups that will never arrive."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from test_learner_loop import ARM, NAMES, SETTINGS, TOKENIZER, produce

from judgelab.api.v1 import learner_pb2
from judgelab.engines.tiny import tiny_model
from judgelab.learner.control import LearnerControl, LearnerPhaseName
from judgelab.learner.loop import LearnerLoop, LoopConfig
from judgelab.learner.metrics import LearnerMetrics
from judgelab.learner.publish import DirectoryPublisher
from judgelab.learner.servicer import LearnerServicer
from judgelab.learner.source import LEARNER_GROUP, StreamGroupSource
from judgelab.learner.trainer import GrpoTrainer
from judgelab.learner.watchdog import LostGroups
from judgelab.queues import Consumer, Delivery, Rollout, RolloutGroup, connect
from judgelab.queues.messages import PromptMessage

SCORED, ROLLOUTS = NAMES.scored(ARM), NAMES.rollouts(ARM)


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    c = connect(redis_url)
    yield c
    c.close()


def make_loop(client: redis.Redis, run: Path, total: int, **kwargs: Any) -> LearnerLoop:
    trainer = GrpoTrainer(tiny_model(len(TOKENIZER), seed=0), TOKENIZER.pad_token_id, SETTINGS)
    publisher = DirectoryPublisher(run / "policy", client, NAMES.policy_version(ARM))
    source = StreamGroupSource(client, NAMES, ARM, TOKENIZER)
    config = LoopConfig(ARM, total_steps=total, prompts_per_step=2, block_ms=50)
    return LearnerLoop(trainer, source, publisher, run / "arm", config, **kwargs)


def test_a_learner_killed_between_its_two_acks_finishes_the_ack_on_resume(
    client: redis.Redis, tmp_path: Path
) -> None:
    produce(client, 2)
    first = make_loop(client, tmp_path, total=1)
    source = first.source
    assert isinstance(source, StreamGroupSource)

    def killed(*args: object, **kwargs: object) -> bool:
        raise RuntimeError("killed after acking the rollouts, before the scored group")

    source.scored.complete = killed  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="killed"):
        first.run()
    assert int(client.xpending(SCORED, LEARNER_GROUP)["pending"]) == 2

    produce(client, 2, version=1, start=10)
    resumed = make_loop(client, tmp_path, total=2)
    assert resumed.resume() is not None
    resumed.run()
    lines = (tmp_path / "arm" / "steps.jsonl").read_text().splitlines()
    assert len(lines) == 2 and '"g10", "g11"' in lines[1]
    # Before the fix the half-acked group was dead-lettered as "no rollout group".
    assert client.xlen(NAMES.dead_letter(SCORED)) == 0
    assert int(client.xpending(SCORED, LEARNER_GROUP)["pending"]) == 0


@pytest.mark.timeout(90)
def test_groups_delivered_by_a_read_whose_reply_was_lost_are_found_again(
    client: redis.Redis, tmp_path: Path
) -> None:
    loop = make_loop(client, tmp_path, total=1)
    assert isinstance(loop.source, StreamGroupSource)
    assert loop.source.read(2, 10) == []  # started: its first re-read of the backlog is done
    produce(client, 2)
    for stream in (SCORED, ROLLOUTS):  # delivered to the learner, reply never seen
        lost = client.xreadgroup(LEARNER_GROUP, f"learner-{ARM}", {stream: ">"}, count=10)
        assert len(lost[0][1]) == 2
    loop.run()  # before the fix: waited for these groups forever (claim timeout: a day)
    lines = (tmp_path / "arm" / "steps.jsonl").read_text().splitlines()
    assert len(lines) == 1 and '"g0", "g1"' in lines[0]
    assert int(client.xpending(SCORED, LEARNER_GROUP)["pending"]) == 0


def test_groups_dead_lettered_on_the_way_fail_the_arm_naming_them(
    client: redis.Redis, tmp_path: Path
) -> None:
    produce(client, 2)
    make_loop(client, tmp_path, total=1).run()  # trains g0, g1
    # Dead letters that must not count: a trained group's copy, another arm's prompt.
    trained_copy = client.xrange(SCORED, count=1)[0][1]
    Consumer(client, SCORED, "other", "x").reject(Delivery("0-1", trained_copy, 1), "copy")
    other = Consumer(client, NAMES.prompts, NAMES.generator_group("arm-b"), "x")
    other.reject(Delivery("0-2", PromptMessage("p-other", "hi", arm="arm-b").to_fields(), 1), "no")
    # Lost for this arm: a prompt its generators refused, rollouts the judges gave up on.
    mine = Consumer(client, NAMES.prompts, NAMES.generator_group(ARM), "x")
    refused = PromptMessage("p-lost", "hi", arm=ARM).to_fields()
    mine.reject(Delivery("0-3", refused, 1), "prompt[0].role: the prompt must end ...")
    produce(client, 1, version=1, start=2)  # g2 arrives; g3 never does
    judges = Consumer(client, ROLLOUTS, "judge-pool", "w", claim_idle_ms=0, max_deliveries=1)
    for scored in judges.read(10):  # g0..g2: judged
        judges.skip(scored)
    g3 = RolloutGroup("g3", ARM, "small", "p3", "q", None, 1, [Rollout("g3-r0", "x", [5])] * 2)
    client.xadd(ROLLOUTS, g3.to_fields())
    assert len(judges.read(10)) == 1 and judges.read(10) == []  # 2nd delivery: dead-lettered

    metrics, control = LearnerMetrics("demo"), LearnerControl(2)
    loop = make_loop(client, tmp_path, total=2, metrics=metrics, control=control)
    loop.resume()
    with pytest.raises(LostGroups) as raised:
        loop.run()
    message = str(raised.value)
    assert "2 group(s) will never arrive, so step 2 cannot be filled" in message
    assert "g3 (jl:demo:rollouts:arm-a:dead: delivered 2 times (max_deliveries 1))" in message
    assert "p-lost (jl:demo:prompts:dead: prompt[0].role" in message
    assert "g0" not in message and "p-other" not in message
    assert sorted(loop.lost) == ["g3", "p-lost"]
    labels = {"experiment": "demo", "arm": ARM}
    registry = metrics.service.registry
    assert registry.get_sample_value("judgelab_learner_lost_groups_total", labels) == 2
    status = LearnerServicer(control).Status(learner_pb2.LearnerStatusRequest(), None)  # type: ignore[arg-type]
    assert status.phase == learner_pb2.LEARNER_PHASE_FAILED
    assert status.metrics["lost_groups"] == 2
    assert control.state().phase == LearnerPhaseName.FAILED
