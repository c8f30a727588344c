"""The judge pool's stream mode on a real redis-server: rollout groups in, scored groups out,
exactly once per group id, bad work dead-lettered, a crashed worker's groups taken over."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest
import redis

from judgelab.engines.base import ChatMessage
from judgelab.engines.constant import ConstantEngine
from judgelab.judge_pool.pool import JudgePool
from judgelab.judge_pool.worker import RolloutScorer
from judgelab.judging import JudgeConfig, PairwiseJudge, PointwiseJudge
from judgelab.queues import Consumer, connect
from judgelab.queues.messages import Rollout, RolloutGroup, ScoredGroup
from judgelab.queues.names import StreamNames
from judgelab.serving.stream_worker import StreamWorker

NAMES = StreamNames("demo")
ROLLOUTS = NAMES.rollouts("arm-a")
SCORED = NAMES.scored("arm-a")


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    connection = connect(redis_url)
    yield connection
    connection.close()


@pytest.fixture
def pool() -> Iterator[JudgePool]:
    engine = ConstantEngine()
    judges = JudgePool()
    judges.add("plain", PointwiseJudge(engine, JudgeConfig(name="plain", model="c")), max_batch=16)
    judges.add("pairs", PairwiseJudge(engine, JudgeConfig(name="pairs", model="c",
                                                          protocol="pairwise")), max_batch=16)
    yield judges
    judges.close()


def _group(group_id: str, judge: str = "plain", size: int = 4) -> RolloutGroup:
    return RolloutGroup(
        group_id=group_id, arm="arm-a", judge=judge, prompt_id="p1",
        prompt=[ChatMessage("user", "Name a prime number.")], reference=None, policy_version=3,
        rollouts=[Rollout(f"{group_id}-r{i}", f"{i * 2 + 1}") for i in range(size)],
    )


def _worker(client: redis.Redis, pool: JudgePool, name: str = "w1",
            claim_idle_ms: int = 60_000) -> StreamWorker[RolloutGroup]:
    consumer = Consumer(client, ROLLOUTS, "judges", name, claim_idle_ms=claim_idle_ms)
    return StreamWorker(consumer, RolloutScorer(pool, NAMES), block_ms=50)


def _scored(client: redis.Redis) -> list[ScoredGroup]:
    return [ScoredGroup.from_fields(fields) for _, fields in client.xrange(SCORED)]


def test_groups_are_scored_with_their_rollout_ids_and_policy_version(
    client: redis.Redis, pool: JudgePool
) -> None:
    worker = _worker(client, pool)
    for k in range(3):
        client.xadd(ROLLOUTS, _group(f"g{k}").to_fields())
    while worker.step():
        pass
    scored = _scored(client)
    assert [s.group_id for s in scored] == ["g0", "g1", "g2"]
    first = scored[0]
    assert first.rollout_ids == [f"g0-r{i}" for i in range(4)] and first.policy_version == 3
    assert all(v for v in first.valid) and len(set(first.rewards)) == 1
    assert 6.0 < first.rewards[0] < 7.0
    assert worker.consumer.pending_count() == 0


def test_the_groups_of_one_read_are_judged_in_one_batch(
    client: redis.Redis, pool: JudgePool
) -> None:
    for k in range(3):
        client.xadd(ROLLOUTS, _group(f"g{k}").to_fields())
    engine = pool.get("plain").judge.engine
    assert isinstance(engine, ConstantEngine)
    before = engine.calls
    assert _worker(client, pool).step() == 3
    assert engine.calls - before == 1  # 12 rollouts, one model call
    assert len(_scored(client)) == 3


def test_pairwise_groups_get_mean_win_rates(client: redis.Redis, pool: JudgePool) -> None:
    worker = _worker(client, pool)
    client.xadd(ROLLOUTS, _group("g", judge="pairs", size=3).to_fields())
    while worker.step():
        pass
    (scored,) = _scored(client)
    assert len(scored.rewards) == 3 and sum(scored.rewards) / 3 == pytest.approx(0.5)
    assert all(len(j["pairs"]) == 2 for j in scored.judgements)


def test_a_group_sent_twice_is_scored_once(client: redis.Redis, pool: JudgePool) -> None:
    worker = _worker(client, pool)
    client.xadd(ROLLOUTS, _group("same").to_fields())
    client.xadd(ROLLOUTS, _group("same").to_fields())
    while worker.step():
        pass
    assert [s.group_id for s in _scored(client)] == ["same"]
    assert worker.consumer.pending_count() == 0


def test_bad_messages_and_unknown_judges_are_dead_lettered(
    client: redis.Redis, pool: JudgePool
) -> None:
    worker = _worker(client, pool)
    client.xadd(ROLLOUTS, {"kind": "rollout_group", "v": "1", "data": "{not json"})
    client.xadd(ROLLOUTS, _group("g", judge="nobody").to_fields())
    client.xadd(ROLLOUTS, _group("ok").to_fields())
    while worker.step():
        pass
    assert [s.group_id for s in _scored(client)] == ["ok"]
    dead = client.xrange(NAMES.dead_letter(ROLLOUTS))
    reasons = [fields[b"dead_reason"].decode() for _, fields in dead]
    assert len(reasons) == 2 and "nobody" in reasons[1]


def test_a_rollout_too_long_for_the_judge_is_invalid_and_the_rest_of_its_group_is_scored(
    client: redis.Redis, pool: JudgePool
) -> None:
    worker = _worker(client, pool)
    group = _group("long")
    group.rollouts[2] = Rollout("long-r2", "word " * 9000)
    client.xadd(ROLLOUTS, group.to_fields())
    while worker.step():
        pass
    (scored,) = _scored(client)
    assert scored.valid == [True, True, False, True]
    assert scored.rewards[2] == 0.0 and all(6.0 < r < 7.0 for i, r in enumerate(scored.rewards)
                                             if i != 2)
    assert scored.judgements[2]["invalid_reason"] == "too_long"
    assert "8192 context" in scored.judgements[2]["detail"]
    assert client.xlen(NAMES.dead_letter(ROLLOUTS)) == 0


def test_a_crashed_workers_groups_are_taken_over(client: redis.Redis, pool: JudgePool) -> None:
    crashed = Consumer(client, ROLLOUTS, "judges", "crashed", claim_idle_ms=50)
    for k in range(2):
        client.xadd(ROLLOUTS, _group(f"g{k}").to_fields())
    assert len(crashed.read(10)) == 2  # read, then "crash" without acking
    survivor = _worker(client, pool, "survivor", claim_idle_ms=50)
    threading.Event().wait(0.1)
    while survivor.step():
        pass
    assert sorted(s.group_id for s in _scored(client)) == ["g0", "g1"]
    assert survivor.consumer.reclaimed_total == 2 and survivor.consumer.pending_count() == 0


def test_two_workers_share_a_stream_and_score_each_group_once(
    client: redis.Redis, pool: JudgePool, redis_url: str
) -> None:
    for k in range(20):
        client.xadd(ROLLOUTS, _group(f"g{k}").to_fields())
    workers = [_worker(connect(redis_url), pool, f"w{i}") for i in range(2)]
    stop = threading.Event()
    threads = [threading.Thread(target=w.run, args=(stop,)) for w in workers]
    for thread in threads:
        thread.start()
    _wait_until(lambda: len(_scored(client)) >= 20)
    stop.set()
    for thread in threads:
        thread.join(10)
    ids = [s.group_id for s in _scored(client)]
    assert sorted(ids) == sorted(f"g{k}" for k in range(20))
    assert all(w.consumer.completed_total > 0 for w in workers)


def _wait_until(condition: Callable[[], bool], timeout_s: float = 20.0) -> None:
    until = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < until, "timed out"
        time.sleep(0.05)
