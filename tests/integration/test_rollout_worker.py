"""The rollout generator's stream mode on a real redis-server with the tiny model: prompts in,
one rollout group per prompt out (exactly once), arms, bad prompts dead-lettered, new policy
versions announced through Redis picked up between batches, two generators sharing a group."""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
import torch

from judgelab.engines.base import ChatMessage
from judgelab.engines.policy_store import PolicyStore, publish_policy_version
from judgelab.engines.tiny import tiny_engine
from judgelab.queues import Consumer, connect
from judgelab.queues.messages import PromptMessage, RolloutGroup
from judgelab.queues.names import StreamNames
from judgelab.rollout.generator import GenerationDefaults, RolloutGenerator
from judgelab.rollout.policy import PolicyHolder
from judgelab.rollout.worker import PromptSampler, consumer_group
from judgelab.serving.stream_worker import StreamWorker

NAMES = StreamNames("demo")
DEFAULTS = GenerationDefaults(temperature=1.0, top_p=1.0, max_new_tokens=4, group_size=3)


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    connection = connect(redis_url)
    yield connection
    connection.close()


def _worker(
    client: redis.Redis,
    arm: str = "arm-a",
    name: str = "w1",
    root: Path | None = None,
    claim_idle_ms: int = 60_000,
) -> StreamWorker[PromptMessage]:
    store = None
    if root is not None:
        store = PolicyStore(root, redis=client, key=NAMES.policy_version(arm))
    generator = RolloutGenerator(PolicyHolder(tiny_engine(), store), DEFAULTS)
    sampler = PromptSampler(generator, NAMES, arm=arm, judge="plain", max_staleness=1)
    consumer = Consumer(
        client, NAMES.prompts, consumer_group(arm), name, claim_idle_ms=claim_idle_ms
    )
    return StreamWorker(consumer, sampler, count=8, block_ms=50)


def _groups(client: redis.Redis, arm: str = "arm-a") -> list[RolloutGroup]:
    return [RolloutGroup.from_fields(fields) for _, fields in client.xrange(NAMES.rollouts(arm))]


def _drain(worker: StreamWorker[PromptMessage]) -> None:
    while worker.step():
        pass


def _prompt(message_id: str, text: str = "Name a prime number.", arm: str | None = None) -> dict:
    return PromptMessage(message_id, [ChatMessage("user", text)], arm=arm).to_fields()


def test_each_prompt_becomes_one_group_of_g_rollouts(client: redis.Redis) -> None:
    worker = _worker(client)
    for k in range(3):
        client.xadd(NAMES.prompts, _prompt(f"m{k}"))
    _drain(worker)
    groups = _groups(client)
    assert [g.group_id for g in groups] == ["m0", "m1", "m2"]
    # One read, one batch: every group carries that batch's sampling time.
    assert len({g.sample_s for g in groups}) == 1 and (groups[0].sample_s or 0) > 0
    for group in groups:
        assert group.arm == "arm-a" and group.judge == "plain" and group.policy_version == 0
        assert [r.id for r in group.rollouts] == [f"arm-a:{group.group_id}:0:{i}" for i in range(3)]
        assert all(len(r.logprobs) == len(r.token_ids) > 0 for r in group.rollouts)
    assert worker.consumer.pending_count() == 0


def test_a_prompt_sent_twice_is_answered_once_and_other_arms_prompts_are_skipped(
    client: redis.Redis,
) -> None:
    arm_a, arm_b = _worker(client, "arm-a"), _worker(client, "arm-b")
    client.xadd(NAMES.prompts, _prompt("same"))
    client.xadd(NAMES.prompts, _prompt("same"))
    client.xadd(NAMES.prompts, _prompt("only-b", arm="arm-b"))
    _drain(arm_a)
    _drain(arm_b)
    assert [g.group_id for g in _groups(client, "arm-a")] == ["same"]
    assert sorted(g.group_id for g in _groups(client, "arm-b")) == ["only-b", "same"]
    assert arm_a.consumer.pending_count() == 0 and arm_b.consumer.pending_count() == 0


def test_bad_prompts_are_dead_lettered(client: redis.Redis) -> None:
    worker = _worker(client)
    client.xadd(NAMES.prompts, {"kind": "prompt", "v": "1", "data": "{not json"})
    ends_with_assistant = PromptMessage(
        "m-bad", [ChatMessage("user", "Hi"), ChatMessage("assistant", "Hello")]
    )
    client.xadd(NAMES.prompts, ends_with_assistant.to_fields())
    client.xadd(NAMES.prompts, _prompt("m-long", "x " * 600))
    client.xadd(NAMES.prompts, _prompt("ok"))
    _drain(worker)
    assert [g.group_id for g in _groups(client)] == ["ok"]
    dead = client.xrange(NAMES.dead_letter(NAMES.prompts))
    reasons = [fields[b"dead_reason"].decode() for _, fields in dead]
    assert len(reasons) == 3
    assert "user's turn" in reasons[1] and "context length" in reasons[2]


def test_a_version_announced_in_redis_is_used_from_the_next_batch(
    client: redis.Redis, tmp_path: Path
) -> None:
    worker = _worker(client, root=tmp_path)
    client.xadd(NAMES.prompts, _prompt("before"))
    _drain(worker)
    model = copy.deepcopy(worker.handler.generator.holder.current.engine.model)  # type: ignore[attr-defined]
    with torch.no_grad():
        model.lm_head.weight.mul_(0.5)
    key = NAMES.policy_version("arm-a")
    publish_policy_version(tmp_path, 2, model, redis=client, key=key)
    publish_policy_version(tmp_path, 1, model, redis=client, key=key)  # late: never lowers it
    assert client.get(key) == b"2"
    client.xadd(NAMES.prompts, _prompt("after"))
    _drain(worker)
    assert [(g.group_id, g.policy_version) for g in _groups(client)] == [
        ("before", 0),
        ("after", 2),
    ]
    assert _groups(client)[1].rollouts[0].id == "arm-a:after:2:0"


@pytest.mark.slow
def test_two_generators_in_one_group_answer_every_prompt_exactly_once(
    client: redis.Redis, redis_url: str
) -> None:
    count = 24
    for k in range(count):
        client.xadd(NAMES.prompts, _prompt(f"m{k}", f"Question number {k}?"))
    workers = [_worker(connect(redis_url), name=f"w{i}") for i in range(2)]
    for worker in workers:
        worker.count = 2  # small reads, so both get a share
    stop = threading.Event()
    threads = [threading.Thread(target=w.run, args=(stop,)) for w in workers]
    for thread in threads:
        thread.start()
    try:
        _wait_until(lambda: len(_groups(client)) >= count)
        time.sleep(0.3)  # a duplicate would show up now
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    ids = [g.group_id for g in _groups(client)]
    assert sorted(ids) == sorted(f"m{k}" for k in range(count))
    assert all(w.consumer.completed_total > 0 for w in workers)
    assert sum(w.consumer.completed_total for w in workers) == count
    assert all(w.consumer.pending_count() == 0 for w in workers)


def _wait_until(condition: Callable[[], bool], timeout_s: float = 120.0) -> None:
    until = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > until:
            raise AssertionError("timed out")
        time.sleep(0.05)
