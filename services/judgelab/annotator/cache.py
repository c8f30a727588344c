"""The gold annotator's durable cache: a judgement per (judge config, prompt, response, reference).

The key is the sha256 of a canonical JSON of those four, so a repeated request costs no model
call; the value is a JSON of every field of the judgement, the gold reasoning included (it is
the training target of reasoning judges). Judgements that failed for a transient reason
(``engine_error``) are never stored; every other outcome is deterministic at temperature 0.
A value that does not parse is logged and treated as a miss, never an error.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast, get_args

from redis.exceptions import RedisError

from judgelab.judging.results import InvalidReason, PointwiseJudgement, Stamp
from judgelab.judging.samples import Prompt

log = logging.getLogger(__name__)

DEFAULT_NAMESPACE = "jl:cache:gold"
#: Bumped when the stored JSON changes shape; older values then read as misses.
VALUE_VERSION = 1
_REASONS: tuple[str, ...] = get_args(InvalidReason)
_TRANSIENT = frozenset({"engine_error"})


def cache_key(config_hash: str, prompt: Prompt, response: str, reference: str | None) -> str:
    """sha256 (hex) of the canonical JSON of what decides a judgement."""
    wire_prompt: str | list[list[str]] = (
        prompt if isinstance(prompt, str) else [[m.role, m.content] for m in prompt]
    )
    canonical = json.dumps(
        [config_hash, wire_prompt, response, reference],
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def cacheable(judgement: PointwiseJudgement) -> bool:
    """False for outcomes that may differ on a retry (the model or server failed)."""
    return judgement.invalid_reason not in _TRANSIENT


@dataclass(frozen=True)
class CachedAnnotation:
    """A judgement as stored: everything but the id of the sample it was first made for."""

    stamp: Stamp
    expected: float
    argmax: int
    distribution: tuple[tuple[int, float], ...]
    mass: float
    reasoning: str
    valid: bool
    invalid_reason: InvalidReason | None
    detail: str
    prompt_tokens: int
    completion_tokens: int
    latency_s: float

    @classmethod
    def of(cls, judgement: PointwiseJudgement) -> CachedAnnotation:
        return cls(
            stamp=judgement.stamp,
            expected=judgement.expected,
            argmax=judgement.argmax,
            distribution=judgement.distribution,
            mass=judgement.mass,
            reasoning=judgement.reasoning,
            valid=judgement.valid,
            invalid_reason=judgement.invalid_reason,
            detail=judgement.detail,
            prompt_tokens=judgement.prompt_tokens,
            completion_tokens=judgement.completion_tokens,
            latency_s=judgement.latency_s,
        )

    def judgement(self, sample_id: str) -> PointwiseJudgement:
        return PointwiseJudgement(
            sample_id=sample_id,
            stamp=self.stamp,
            expected=self.expected,
            argmax=self.argmax,
            distribution=self.distribution,
            mass=self.mass,
            reasoning=self.reasoning,
            valid=self.valid,
            invalid_reason=self.invalid_reason,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            latency_s=self.latency_s,
            detail=self.detail,
        )

    def to_json(self) -> str:
        stamp = self.stamp
        return json.dumps(
            {
                "v": VALUE_VERSION,
                "stamp": [stamp.judge, stamp.template_id, stamp.template_hash, stamp.config_hash],
                "expected": self.expected,
                "argmax": self.argmax,
                "distribution": [list(pair) for pair in self.distribution],
                "mass": self.mass,
                "reasoning": self.reasoning,
                "valid": self.valid,
                "invalid_reason": self.invalid_reason,
                "detail": self.detail,
                "tokens": [self.prompt_tokens, self.completion_tokens],
                "latency_s": self.latency_s,
            },
            ensure_ascii=False,
            separators=(",", ":"),
            allow_nan=False,
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> CachedAnnotation:
        """Parse a stored value; ValueError (or a subclass) when it is not a valid one."""
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("v") != VALUE_VERSION:
            raise ValueError("not a cached annotation of this version")
        judge, template_id, template_hash, config_hash = _strs(data["stamp"], 4)
        reason = data["invalid_reason"]
        if reason is not None and reason not in _REASONS:
            raise ValueError(f"unknown invalid_reason {reason!r}")
        prompt_tokens, completion_tokens = _ints(data["tokens"], 2)
        return cls(
            stamp=Stamp(judge, template_id, template_hash, config_hash),
            expected=_number(data["expected"]),
            argmax=_ints([data["argmax"]], 1)[0],
            distribution=tuple(_pair(pair) for pair in _list(data["distribution"])),
            mass=_number(data["mass"]),
            reasoning=_strs([data["reasoning"]], 1)[0],
            valid=_bool(data["valid"]),
            invalid_reason=cast("InvalidReason | None", reason),
            detail=_strs([data["detail"]], 1)[0],
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            latency_s=_number(data["latency_s"]),
        )


class AnnotationStore(Protocol):
    """What the annotator needs of a cache; :class:`AnnotationCache` and :class:`MemoryCache`."""

    def get_many(self, keys: Sequence[str]) -> dict[str, CachedAnnotation]: ...

    def put_many(self, entries: Mapping[str, PointwiseJudgement]) -> int: ...


class AnnotationCache:
    """The durable cache in Redis: one MGET per lookup, one pipeline per store, no expiry."""

    def __init__(self, redis: Any, namespace: str = DEFAULT_NAMESPACE) -> None:
        self.redis = redis
        self.namespace = namespace

    def redis_key(self, key: str) -> str:
        return f"{self.namespace}:{key}"

    def get_many(self, keys: Sequence[str]) -> dict[str, CachedAnnotation]:
        """The hits among ``keys``; Redis trouble is logged and reads as all misses."""
        if not keys:
            return {}
        try:
            values = self.redis.mget([self.redis_key(key) for key in keys])
        except RedisError as error:
            log.warning("gold cache lookup failed, treated as misses: %s", error)
            return {}
        return _parsed(zip(keys, values, strict=True))

    def put_many(self, entries: Mapping[str, PointwiseJudgement]) -> int:
        """Store the cacheable entries; returns how many (0 when Redis failed, logged)."""
        keep = _storable(entries)
        if not keep:
            return 0
        try:
            pipe = self.redis.pipeline(transaction=False)
            for key, value in keep.items():
                pipe.set(self.redis_key(key), value)
            pipe.execute()
        except RedisError as error:
            log.warning("gold cache store of %d entries failed: %s", len(keep), error)
            return 0
        return len(keep)


class MemoryCache:
    """The same behaviour in process memory (tests, runs without Redis); values stay JSON."""

    def __init__(self) -> None:
        self.values: dict[str, str | bytes] = {}
        self._lock = threading.Lock()

    def get_many(self, keys: Sequence[str]) -> dict[str, CachedAnnotation]:
        with self._lock:
            found = [(key, self.values.get(key)) for key in keys]
        return _parsed(found)

    def put_many(self, entries: Mapping[str, PointwiseJudgement]) -> int:
        keep = _storable(entries)
        with self._lock:
            self.values.update(keep)
        return len(keep)


def _storable(entries: Mapping[str, PointwiseJudgement]) -> dict[str, str]:
    return {
        key: CachedAnnotation.of(judgement).to_json()
        for key, judgement in entries.items()
        if cacheable(judgement)
    }


def _parsed(found: Iterable[tuple[str, str | bytes | None]]) -> dict[str, CachedAnnotation]:
    hits = {}
    for key, value in found:
        if value is None:
            continue
        try:
            hits[key] = CachedAnnotation.from_json(value)
        except (ValueError, KeyError, TypeError) as error:
            log.warning("gold cache entry %s is corrupt, treated as a miss: %s", key, error)
    return hits


def _list(value: object) -> list[object]:
    if not isinstance(value, list):
        raise TypeError(f"expected a list, got {type(value).__name__}")
    return value


def _strs(value: object, count: int) -> list[str]:
    items = _list(value)
    if len(items) != count or not all(isinstance(item, str) for item in items):
        raise TypeError(f"expected {count} strings")
    return cast("list[str]", items)


def _ints(value: object, count: int) -> list[int]:
    items = _list(value)
    if len(items) != count or not all(
        isinstance(item, int) and not isinstance(item, bool) for item in items
    ):
        raise TypeError(f"expected {count} integers")
    return cast("list[int]", items)


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {type(value).__name__}")
    return float(value)


def _bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected a boolean, got {type(value).__name__}")
    return value


def _pair(value: object) -> tuple[int, float]:
    items = _list(value)
    if len(items) != 2:
        raise TypeError("expected a [value, probability] pair")
    return _ints(items[:1], 1)[0], _number(items[1])
