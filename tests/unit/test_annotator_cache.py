"""The gold cache: stable, sensitive keys; faithful values; corrupt entries are misses."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import replace
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from judgelab.annotator.cache import (
    AnnotationCache,
    CachedAnnotation,
    MemoryCache,
    cache_key,
    cacheable,
)
from judgelab.engines.base import ChatMessage
from judgelab.judging import PointwiseJudgement, Stamp

STAMP = Stamp("gold", "pointwise-reasoning-v1", "t" * 64, "c" * 64)
CHAT = [ChatMessage("system", "Be brief."), ChatMessage("user", "What is 2+2?")]


def judgement(**changes: Any) -> PointwiseJudgement:
    base = PointwiseJudgement(
        sample_id="s1",
        stamp=STAMP,
        expected=6.25,
        argmax=6,
        distribution=((5, 0.25), (6, 0.5), (7, 0.25)),
        mass=0.875,
        reasoning="The answer is right but terse. «ünïcode» {{response}}",
        valid=True,
        invalid_reason=None,
        prompt_tokens=120,
        completion_tokens=37,
        latency_s=1.5,
    )
    return replace(base, **changes)


def test_key_is_the_sha256_of_canonical_json():
    key = cache_key("abc", CHAT, "4", None)
    canonical = '["abc",[["system","Be brief."],["user","What is 2+2?"]],"4",null]'
    assert key == hashlib.sha256(canonical.encode()).hexdigest()
    assert (
        cache_key("abc", "plain", "4", "ref")
        == hashlib.sha256(b'["abc","plain","4","ref"]').hexdigest()
    )


def test_key_is_stable_for_equal_inputs():
    copy = [ChatMessage(m.role, m.content) for m in CHAT]
    assert cache_key("h", CHAT, "4", "four") == cache_key("h", copy, "4", "four")
    assert cache_key("h", CHAT, "4", "four") == cache_key("h", tuple(CHAT), "4", "four")


@pytest.mark.parametrize(
    "changed",
    [
        ("h2", CHAT, "4", "four"),
        ("h", [*CHAT[:1], ChatMessage("user", "What is 2+3?")], "4", "four"),
        ("h", [ChatMessage("user", "Be brief."), CHAT[1]], "4", "four"),
        ("h", "What is 2+2?", "4", "four"),
        ("h", CHAT, "5", "four"),
        ("h", CHAT, "4", "4"),
        ("h", CHAT, "4", None),
        ("h", CHAT, "4", ""),
    ],
    ids=["config", "prompt", "role", "str-prompt", "response", "reference", "no-ref", "empty-ref"],
)
def test_key_changes_with_every_input(changed: tuple[Any, ...]):
    assert cache_key(*changed) != cache_key("h", CHAT, "4", "four")


def test_key_has_no_ambiguous_concatenation():
    assert cache_key("h", "ab", "c", None) != cache_key("h", "a", "bc", None)


def test_value_round_trips_every_field():
    original = judgement(detail="note")
    stored = CachedAnnotation.of(original)
    back = CachedAnnotation.from_json(stored.to_json()).judgement("other-id")
    assert back == replace(original, sample_id="other-id")


def test_invalid_judgements_round_trip_too():
    original = judgement(
        valid=False,
        invalid_reason="truncated",
        expected=0.0,
        argmax=0,
        distribution=(),
        mass=0.0,
        detail="hit the token limit",
    )
    back = CachedAnnotation.from_json(CachedAnnotation.of(original).to_json()).judgement("s1")
    assert back == original


def test_engine_errors_are_not_cacheable_other_invalid_reasons_are():
    assert cacheable(judgement())
    for reason in ("unparseable", "out_of_range", "truncated", "empty_output"):
        assert cacheable(judgement(valid=False, invalid_reason=reason))
    assert not cacheable(judgement(valid=False, invalid_reason="engine_error"))

    cache = MemoryCache()
    stored = cache.put_many(
        {
            "a": judgement(),
            "b": judgement(valid=False, invalid_reason="engine_error", detail="connection reset"),
            "c": judgement(valid=False, invalid_reason="unparseable"),
        }
    )
    assert stored == 2
    assert set(cache.get_many(["a", "b", "c"])) == {"a", "c"}


CORRUPT = [
    b"not json",
    b"\xff\xfe\x00garbage",
    b"[]",
    b'{"v": 999}',
    b"{}",
]


@pytest.mark.parametrize("value", CORRUPT)
def test_corrupt_entries_are_misses_and_logged(value: bytes, caplog: pytest.LogCaptureFixture):
    cache = MemoryCache()
    cache.put_many({"good": judgement()})
    cache.values["bad"] = value
    with caplog.at_level(logging.WARNING, logger="judgelab.annotator.cache"):
        found = cache.get_many(["bad", "good", "absent"])
    assert set(found) == {"good"}
    assert "bad" in caplog.text and "corrupt" in caplog.text


@pytest.mark.parametrize(
    "field, value",
    [
        ("expected", "6.25"),
        ("argmax", 6.5),
        ("argmax", True),
        ("valid", 1),
        ("invalid_reason", "exploded"),
        ("tokens", [1]),
        ("stamp", ["gold", "t"]),
        ("distribution", [[5, 0.5, 1]]),
        ("reasoning", None),
    ],
)
def test_wrongly_typed_fields_are_misses(field: str, value: Any):
    import json

    data = json.loads(CachedAnnotation.of(judgement()).to_json())
    data[field] = value
    cache = MemoryCache()
    cache.values["k"] = json.dumps(data)
    assert cache.get_many(["k"]) == {}


class FakeRedis:
    """Records the calls the cache makes; ``down`` makes every call fail like a dead server."""

    def __init__(self) -> None:
        self.data: dict[str, str] = {}
        self.calls: list[str] = []
        self.down = False

    def mget(self, keys: list[str]) -> list[str | None]:
        self._call("mget")
        return [self.data.get(key) for key in keys]

    def pipeline(self, transaction: bool = True) -> FakeRedis.Pipe:
        self._call("pipeline")
        return FakeRedis.Pipe(self)

    def _call(self, name: str) -> None:
        if self.down:
            raise RedisConnectionError("connection refused")
        self.calls.append(name)

    class Pipe:
        def __init__(self, owner: FakeRedis) -> None:
            self.owner, self.queued = owner, []

        def set(self, key: str, value: str) -> None:
            self.queued.append((key, value))

        def execute(self) -> None:
            self.owner._call("execute")
            self.owner.data.update(self.queued)


def test_redis_cache_uses_one_round_trip_each_way_under_its_namespace():
    redis = FakeRedis()
    cache = AnnotationCache(redis, namespace="jl:test")
    assert cache.put_many({f"k{i}": judgement(sample_id=str(i)) for i in range(5)}) == 5
    assert redis.calls == ["pipeline", "execute"]
    assert sorted(redis.data) == [f"jl:test:k{i}" for i in range(5)]

    redis.calls.clear()
    found = cache.get_many(["k0", "k3", "nope"])
    assert redis.calls == ["mget"]
    assert set(found) == {"k0", "k3"}
    assert found["k3"].judgement("x") == judgement(sample_id="x")


def test_redis_trouble_reads_as_misses_and_stores_nothing(caplog: pytest.LogCaptureFixture):
    redis = FakeRedis()
    cache = AnnotationCache(redis)
    cache.put_many({"k": judgement()})
    redis.down = True
    with caplog.at_level(logging.WARNING):
        assert cache.get_many(["k"]) == {}
        assert cache.put_many({"j": judgement()}) == 0
    assert "lookup failed" in caplog.text and "store" in caplog.text
