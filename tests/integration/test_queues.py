"""The Redis-streams data plane against a real redis-server (fixture ``redis_url``)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import redis
from redis.connection import SSLConnection, UnixDomainSocketConnection
from support.redis_server import RedisServer, free_port

from judgelab.queues import (
    Consumer,
    Producer,
    RedisUnavailable,
    Rollout,
    ScoredGroup,
    StreamFull,
    StreamNames,
    connect,
)
from judgelab.queues.connection import connection_kwargs, redact, target

NAMES = StreamNames("demo")
IN = NAMES.rollouts("arm-a")
OUT = NAMES.scored("arm-a")
GROUP = "judge-pool"


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    c = connect(redis_url)
    yield c
    c.close()


def scored(group_id: str) -> ScoredGroup:
    return ScoredGroup(group_id, "arm-a", "small", 0, ["r"], [1.0], [True], [{}])


def consumer(client: redis.Redis, name: str, **options: int) -> Consumer:
    return Consumer(client, IN, GROUP, name, **options)


def pending_ids(client: redis.Redis) -> list[str]:
    rows = client.xpending_range(IN, GROUP, min="-", max="+", count=100)
    return [row["message_id"].decode() for row in rows]


def test_produce_consume_and_ack(client: redis.Redis) -> None:
    producer = Producer(client)
    ids = [producer.add(IN, Rollout(f"r-{i}", "text").to_fields()) for i in range(3)]
    worker = consumer(client, "w1")
    deliveries = worker.read(count=10)
    assert [d.id for d in deliveries] == ids
    assert [d.deliveries for d in deliveries] == [1, 1, 1]
    assert Rollout.from_fields(deliveries[2].fields) == Rollout("r-2", "text")
    assert worker.lag() == 0 and worker.pending_count() == 3
    for d in deliveries:
        worker.complete(d, [(OUT, scored(d.id).to_fields())])
    stats = worker.stats()
    assert (stats.pending, stats.lag, stats.completed_total, stats.length) == (0, 0, 3, 3)
    assert client.xlen(OUT) == 3
    assert worker.read(count=10) == []


def test_add_all_wakes_a_blocked_consumer_once_with_every_entry(client: redis.Redis) -> None:
    worker = consumer(client, "w1")
    worker.read(count=1)  # creates the group before anything is added
    reads: list[list[str]] = []
    reader = threading.Thread(target=lambda: reads.append([d.id for d in worker.read(16, 3000)]))
    reader.start()
    time.sleep(0.3)  # the reader is blocked in XREADGROUP by now
    ids = Producer(client).add_all(IN, [Rollout(f"r-{i}", "t").to_fields() for i in range(3)])
    reader.join(timeout=5)
    assert reads == [ids] and len(ids) == 3
    assert Producer(client).add_all(IN, []) == []


def test_crashed_consumers_work_is_reclaimed_after_idle_time(client: redis.Redis) -> None:
    entry = Producer(client).add(IN, Rollout("r", "t").to_fields())
    crashed = consumer(client, "crashed", claim_idle_ms=200)
    assert [d.id for d in crashed.read()] == [entry]
    survivor = consumer(client, "survivor", claim_idle_ms=200)
    assert survivor.read() == []  # not idle long enough yet
    time.sleep(0.25)
    (taken,) = survivor.read()
    assert (taken.id, taken.deliveries) == (entry, 2)
    assert survivor.reclaimed_total == 1
    owner = client.xpending_range(IN, GROUP, min="-", max="+", count=1)[0]["consumer"]
    assert owner == b"survivor"
    survivor.complete(taken)
    assert pending_ids(client) == []


def test_touch_keeps_slow_work_from_being_reclaimed(client: redis.Redis) -> None:
    Producer(client).add(IN, Rollout("r", "t").to_fields())
    slow = consumer(client, "slow", claim_idle_ms=400)
    other = consumer(client, "other", claim_idle_ms=400)
    deliveries = slow.read()
    time.sleep(0.25)
    assert slow.touch(deliveries) == 1
    time.sleep(0.2)
    assert other.read() == []
    time.sleep(0.25)
    assert len(other.read()) == 1


def test_poison_message_is_dead_lettered_with_reason(client: redis.Redis) -> None:
    fields = Rollout("r", "t").to_fields()
    entry = Producer(client).add(IN, fields)
    worker = consumer(client, "w", claim_idle_ms=10, max_deliveries=2)
    assert [d.deliveries for d in worker.read()] == [1]
    time.sleep(0.02)
    assert [d.deliveries for d in worker.read()] == [2]
    time.sleep(0.02)
    assert worker.read() == []
    assert worker.dead_lettered_total == 1 and pending_ids(client) == []
    ((dead_id, dead),) = client.xrange(NAMES.dead_letter(IN))
    assert dead[b"dead_reason"] == b"delivered 3 times (max_deliveries 2)"
    assert dead[b"dead_id"] == entry.encode() and dead[b"dead_deliveries"] == b"3"
    assert Rollout.from_fields(dead) == Rollout("r", "t")
    assert worker.stats().dead_letter_length == 1


def test_reject_dead_letters_a_bad_message_at_once(client: redis.Redis) -> None:
    Producer(client).add(IN, {"kind": "rollout", "v": "1", "data": "{oops"})
    worker = consumer(client, "w")
    (delivery,) = worker.read()
    with pytest.raises(ValueError) as bad:
        Rollout.from_fields(delivery.fields)
    worker.reject(delivery, str(bad.value))
    ((_, dead),) = client.xrange(NAMES.dead_letter(IN))
    assert dead[b"dead_reason"].startswith(b"rollout message: field 'data' is not valid JSON")
    assert pending_ids(client) == []


def test_complete_writes_nothing_and_keeps_the_message_pending_when_it_fails(
    client: redis.Redis,
) -> None:
    entry = Producer(client).add(IN, Rollout("r", "t").to_fields())
    client.set("not-a-stream", "x")
    worker = consumer(client, "w")
    (delivery,) = worker.read()
    outputs = [(OUT, scored("g").to_fields()), ("not-a-stream", scored("g").to_fields())]
    with pytest.raises(ValueError, match="not-a-stream holds a string"):
        worker.complete(delivery, outputs, processed_id="g")
    assert client.exists(OUT) == 0
    assert pending_ids(client) == [entry]
    assert not worker.already_done("g")
    assert worker.complete(delivery, outputs[:1], processed_id="g")
    assert client.xlen(OUT) == 1 and pending_ids(client) == [] and worker.already_done("g")


def test_processed_ids_make_redelivery_harmless(client: redis.Redis) -> None:
    producer = Producer(client)
    for _ in range(2):  # the same group produced twice (a rollout worker retried)
        producer.add(IN, scored("g-1").to_fields())
    worker = consumer(client, "w")
    first, second = worker.read()
    assert worker.complete(first, [(OUT, scored("g-1").to_fields())], processed_id="g-1")
    assert worker.already_done("g-1")
    worker.skip(second)
    assert worker.complete(second, [(OUT, scored("g-1").to_fields())], processed_id="g-1") is False
    assert client.xlen(OUT) == 1 and pending_ids(client) == []
    assert (worker.completed_total, worker.skipped_total) == (1, 2)


def test_racing_consumers_write_one_result_per_processed_id(client: redis.Redis) -> None:
    producer = Producer(client)
    for i in range(40):
        producer.add(IN, scored(f"g-{i % 20}").to_fields())
    workers = [consumer(client, f"w{i}") for i in range(4)]

    def work(worker: Consumer) -> None:
        while deliveries := worker.read(count=3):
            for d in deliveries:
                group_id = ScoredGroup.from_fields(d.fields).group_id
                worker.complete(d, [(OUT, scored(group_id).to_fields())], processed_id=group_id)

    threads = [threading.Thread(target=work, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    written = [ScoredGroup.from_fields(f).group_id for _, f in client.xrange(OUT)]
    assert sorted(written) == sorted(f"g-{i}" for i in range(20))
    assert sum(w.completed_total for w in workers) == 20
    assert pending_ids(client) == []


def test_back_pressure_raises_stream_full_then_unblocks_when_consumed(
    client: redis.Redis,
) -> None:
    producer = Producer(client, max_length=3)
    worker = consumer(client, "w")
    for i in range(3):
        producer.add(IN, Rollout(f"r-{i}", "t").to_fields())
    start = time.monotonic()
    with pytest.raises(StreamFull, match="3 unconsumed entries"):
        producer.add(IN, Rollout("r-3", "t").to_fields(), wait_s=0.1)
    assert 0.1 <= time.monotonic() - start < 1.0
    deliveries = worker.read(count=1)
    with pytest.raises(StreamFull):  # delivered but unacknowledged work still counts
        producer.add(IN, Rollout("r-3", "t").to_fields())
    timer = threading.Timer(0.2, worker.complete, args=(deliveries[0],))
    timer.start()
    start = time.monotonic()
    producer.add(IN, Rollout("r-3", "t").to_fields(), wait_s=5)
    assert time.monotonic() - start < 2.0
    timer.join()
    assert client.xlen(IN) == 4  # acknowledged entries stay until the safety cap trims them
    assert producer.room(IN) == 0 and producer.full_total == 2


def test_unreachable_redis_is_a_clear_error_within_seconds() -> None:
    port = free_port()
    start = time.monotonic()
    with pytest.raises(RedisUnavailable) as caught:
        connect(f"redis://worker:s3cret@127.0.0.1:{port}/0", attempts=3, timeout_s=0.5)
    assert time.monotonic() - start < 3.0
    message = str(caught.value)
    assert message.startswith(f"Redis at 127.0.0.1:{port} unreachable after 3 attempt(s): ")
    assert "Connection refused" in message and "s3cret" not in message and "\n" not in message


def test_acl_user_connects_and_wrong_password_is_refused(redis_url: str) -> None:
    admin = redis.Redis.from_url(redis_url)
    admin.acl_setuser(
        "worker", enabled=True, passwords=["+p@ss w0rd"], keys=["jl:*"], commands=["+@all"]
    )
    try:
        url = redis_url.replace("redis://", "redis://worker:p%40ss%20w0rd@")
        assert connect(url).xadd(IN, {"k": "v"})
        with pytest.raises(RedisUnavailable, match="refused the connection") as caught:
            connect(url.replace("w0rd", "wrong"), attempts=3)
        assert "p@ss" not in str(caught.value)
    finally:
        admin.acl_deluser("worker")
        admin.close()


def test_unix_socket_url_connects(redis_server: RedisServer, redis_url: str) -> None:
    client = connect(redis_server.unix_url)
    client.xadd(IN, {"k": "v"})
    assert redis.Redis.from_url(redis_url).xlen(IN) == 1


def test_acknowledged_results_and_pending_work_survive_a_redis_restart(
    redis_server: RedisServer, client: redis.Redis
) -> None:
    producer = Producer(client)
    ids = [producer.add(IN, Rollout(f"r-{i}", "t").to_fields()) for i in range(4)]
    worker = consumer(client, "w")
    done, open_ = worker.read(count=4)[:2], ids[2:]
    for d in done:
        worker.complete(d, [(OUT, scored(d.id).to_fields())], processed_id=d.id)
    redis_server.restart()
    after = connect(redis_server.url)
    assert [f for _, f in after.xrange(OUT)] == [
        {k.encode(): v.encode() for k, v in scored(d.id).to_fields().items()} for d in done
    ]
    assert pending_ids(after) == open_
    successor = Consumer(after, IN, GROUP, "successor", claim_idle_ms=0)
    assert successor.already_done(done[0].id)
    assert [(d.id, d.deliveries) for d in successor.read()] == [(i, 2) for i in open_]


def test_completions_stay_atomic_when_redis_is_killed_mid_stream(
    redis_server: RedisServer, redis_url: str
) -> None:
    client = connect(redis_url, attempts=1)
    producer = Producer(client)
    for i in range(2000):
        producer.add(IN, Rollout(f"r-{i}", "t").to_fields())
    worker = consumer(client, "w", outage_timeout_s=0)  # fail, not wait, when Redis dies

    def kill_mid_stream() -> None:
        deadline = time.monotonic() + 10
        while worker.completed_total < 300 and time.monotonic() < deadline:
            time.sleep(0.001)
        redis_server.kill()

    killer = threading.Thread(target=kill_mid_stream)
    killer.start()
    with pytest.raises(redis.ConnectionError):
        while deliveries := worker.read(count=20):
            for d in deliveries:
                worker.complete(d, [(OUT, scored(d.id).to_fields())], processed_id=d.id)
    killer.join()
    redis_server.restart()
    after = connect(redis_url)
    outputs = {ScoredGroup.from_fields(f).group_id for _, f in after.xrange(OUT)}
    done = set(map(bytes.decode, after.smembers(NAMES.processed_set(IN, GROUP))))
    last = after.xinfo_groups(IN)[0]["last-delivered-id"].decode()
    unacked = set(pending_ids(after)) | {
        i.decode() for i, _ in after.xrange(IN, min=f"({last}", max="+")
    }
    every = {i.decode() for i, _ in after.xrange(IN)}
    assert 0 < len(outputs) < 2000 and outputs == done
    assert outputs.isdisjoint(unacked) and outputs | unacked == every


def test_consumer_recreates_its_group_after_redis_lost_it(client: redis.Redis) -> None:
    worker = consumer(client, "w")
    client.flushall()
    entry = Producer(client).add(IN, Rollout("r", "t").to_fields())
    assert [d.id for d in worker.read()] == [entry]


def test_block_must_stay_below_the_socket_timeout(redis_url: str) -> None:
    worker = consumer(connect(redis_url, socket_timeout_s=1.0), "w")
    with pytest.raises(ValueError, match="below the client's socket timeout"):
        worker.read(block_ms=1000)
    start = time.monotonic()
    assert worker.read(block_ms=100) == []
    assert time.monotonic() - start >= 0.09


def test_tls_and_acl_urls_become_connection_kwargs() -> None:
    kwargs = connection_kwargs(
        "rediss://worker:p%40ss@redis.example:6380/2?ssl_cert_reqs=none", timeout_s=2.0
    )
    assert kwargs["connection_class"] is SSLConnection
    assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("redis.example", 6380, 2)
    assert (kwargs["username"], kwargs["password"]) == ("worker", "p@ss")
    assert kwargs["ssl_cert_reqs"] == "none" and kwargs["socket_connect_timeout"] == 2.0
    assert kwargs["decode_responses"] is False
    assert isinstance(redis.ConnectionPool(**kwargs).make_connection(), SSLConnection)
    unix = connection_kwargs("unix:///run/redis/redis.sock?db=3")
    assert unix["connection_class"] is UnixDomainSocketConnection
    assert (unix["path"], unix["db"]) == ("/run/redis/redis.sock", 3)
    assert isinstance(redis.ConnectionPool(**unix).make_connection(), UnixDomainSocketConnection)
    with pytest.raises(ValueError, match="schemes"):
        connection_kwargs("http://redis.example:6379")
    with pytest.raises(ValueError, match="RESP2"):
        connection_kwargs("redis://localhost?protocol=3")
    assert redact("rediss://worker:p%40ss@redis.example:6380/2") == (
        "rediss://worker:***@redis.example:6380/2"
    )
    assert target("rediss://worker:p%40ss@redis.example:6380/2") == "redis.example:6380"
    assert target("redis://") == "localhost:6379"
    assert target("unix:///run/redis.sock") == "/run/redis.sock"


def test_stream_names() -> None:
    assert NAMES.prompts == "jl:demo:prompts"
    assert (IN, OUT) == ("jl:demo:rollouts:arm-a", "jl:demo:scored:arm-a")
    assert (NAMES.gold_requests, NAMES.gold_results) == (
        "jl:demo:gold:requests",
        "jl:demo:gold:results",
    )
    assert NAMES.dead_letter(IN) == "jl:demo:rollouts:arm-a:dead"
    assert NAMES.processed_set(IN, GROUP) == "jl:demo:rollouts:arm-a:done:judge-pool"
    for bad in ["Demo", "a:b", "-x", "", "x" * 64]:
        with pytest.raises(ValueError, match="DNS-1123 label"):
            StreamNames(bad)
    with pytest.raises(ValueError, match="arm name 'arm:1'"):
        NAMES.rollouts("arm:1")
