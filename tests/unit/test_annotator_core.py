"""The gold annotator core: cache first, one model call per batch of misses, errors as values."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import pytest

from judgelab.annotator.cache import MemoryCache
from judgelab.annotator.core import GoldAnnotatorCore
from judgelab.annotator.ratelimit import RateLimiter
from judgelab.engines.base import (
    ChatMessage,
    Conversation,
    Engine,
    EngineError,
    Generation,
    SamplingParams,
)
from judgelab.judging import JudgeConfig, PointwiseJudge, Sample
from judgelab.serving.errors import DeadlineExceeded, InvalidArgument
from judgelab.serving.metrics import ServiceMetrics

if TYPE_CHECKING:
    from judgelab.engines.transformers_engine import TransformersEngine

GOLD = JudgeConfig(name="gold", model="scripted", reasoning=True, max_new_tokens=16)
TINY_GOLD = JudgeConfig(name="gold", model="tiny", reasoning=True, max_new_tokens=8)


class ScriptedEngine(Engine):
    """Scores each response by its length mod 10, with a written rationale. ``gate`` holds
    every call until set; ``fail`` makes calls raise like an unreachable server."""

    name = "scripted"

    def __init__(self, context_length: int = 4096) -> None:
        self.batches: list[int] = []
        self.fail = False
        self.gate = threading.Event()
        self.gate.set()
        self._context_length = context_length

    def generate(
        self, conversations: Sequence[Conversation], params: SamplingParams
    ) -> list[Generation]:
        self.gate.wait(30)
        self.batches.append(len(conversations))
        if self.fail:
            raise EngineError("connection refused")
        return [self._answer(c) for c in conversations]

    def _answer(self, conversation: Conversation) -> Generation:
        user = conversation[-1].content
        score = len(user) % 10
        text = f"Weighing the answer of {len(user)} characters.\nScore: {score}"
        return Generation(
            text, [], [-0.1] * 12, "stop", prompt_tokens=self.count_tokens(conversation)
        )

    def count_tokens(self, conversation: Conversation) -> int:
        return sum(len(m.content) for m in conversation) // 4

    @property
    def context_length(self) -> int:
        return self._context_length


def samples(n: int, prefix: str = "s") -> list[Sample]:
    return [
        Sample(f"{prefix}{i}", [ChatMessage("user", f"Question {i}?")], "x" * (i + 1))
        for i in range(n)
    ]


@pytest.fixture
def engine() -> ScriptedEngine:
    return ScriptedEngine()


@pytest.fixture
def core(engine: ScriptedEngine) -> Iterator[GoldAnnotatorCore]:
    core = GoldAnnotatorCore(PointwiseJudge(engine, GOLD), cache=MemoryCache(), max_batch=4)
    yield core
    core.close()


def test_a_repeated_request_makes_no_model_call(core: GoldAnnotatorCore):
    batch = samples(10)
    first = core.annotate(batch)
    calls = core.model_calls
    assert calls == 3  # 10 misses in batches of at most 4
    assert [r.cached for r in first] == [False] * 10
    assert all(r.judgement.valid and r.judgement.reasoning for r in first)

    again = core.annotate(batch)
    assert core.model_calls == calls
    assert [r.cached for r in again] == [True] * 10
    assert [r.judgement for r in again] == [r.judgement for r in first]


def test_results_come_back_in_request_order_with_their_ids(core: GoldAnnotatorCore):
    batch = samples(6)
    core.annotate(batch[::2])  # half of them cached first
    results = core.annotate(batch)
    assert [r.judgement.sample_id for r in results] == [s.id for s in batch]
    assert [r.cached for r in results] == [True, False] * 3
    assert [r.judgement.argmax for r in results] == [
        r.judgement.argmax for r in core.annotate(batch)
    ]


def test_the_cache_answers_other_ids_with_the_same_content(core: GoldAnnotatorCore):
    core.annotate(samples(3, prefix="first-"))
    results = core.annotate(samples(3, prefix="second-"))
    assert core.model_calls == 1
    assert [r.judgement.sample_id for r in results] == ["second-0", "second-1", "second-2"]
    assert all(r.cached for r in results)


def test_duplicates_in_one_request_are_judged_once(core: GoldAnnotatorCore, engine: ScriptedEngine):
    [a, b] = samples(2)
    batch = [a, Sample("a-again", a.prompt, a.response), b, Sample("a-third", a.prompt, a.response)]
    results = core.annotate(batch)
    assert engine.batches == [2]
    assert core.judged == 2
    assert [r.judgement.sample_id for r in results] == ["s0", "a-again", "s1", "a-third"]
    assert results[0].judgement.expected == results[1].judgement.expected
    assert results[0].judgement.expected == results[3].judgement.expected


def test_the_reference_is_part_of_the_key_only_for_reference_guided_judges(engine: ScriptedEngine):
    plain = GoldAnnotatorCore(PointwiseJudge(engine, GOLD), cache=MemoryCache())
    ref_config = JudgeConfig(
        name="gold", model="scripted", reasoning=True, max_new_tokens=16, reference_guided=True
    )
    guided = GoldAnnotatorCore(PointwiseJudge(engine, ref_config), cache=MemoryCache())
    try:
        one, two = Sample("a", "q", "r", reference="one"), Sample("a", "q", "r", reference="two")
        assert plain.key(one) == plain.key(two) == plain.key(Sample("a", "q", "r"))
        assert guided.key(one) != guided.key(two)
        assert plain.key(one) != guided.key(one)  # the config hash differs
    finally:
        plain.close()
        guided.close()


def test_engine_errors_are_returned_but_not_cached(core: GoldAnnotatorCore, engine: ScriptedEngine):
    batch = samples(2)
    engine.fail = True
    failed = core.annotate(batch)
    assert [(r.judgement.valid, r.judgement.invalid_reason) for r in failed] == [
        (False, "engine_error")
    ] * 2
    assert "connection refused" in failed[0].judgement.detail

    engine.fail = False
    calls = core.model_calls
    retried = core.annotate(batch)
    assert core.model_calls > calls
    assert all(r.judgement.valid and not r.cached for r in retried)
    assert all(r.cached for r in core.annotate(batch))


def test_unparseable_outputs_are_cached(tiny_engine: TransformersEngine):
    unforced = replace(TINY_GOLD, force_verdict=False)  # keep the gibberish invalid
    core = GoldAnnotatorCore(PointwiseJudge(tiny_engine, unforced), cache=MemoryCache())
    try:
        batch = samples(3)
        batch.append(Sample("again", batch[1].prompt, batch[1].response))
        first = core.annotate(batch)
        assert core.judged == 3  # the duplicate rode along
        assert first[3].judgement == replace(first[1].judgement, sample_id="again")
        # The random tiny model writes gibberish: invalid but deterministic verdicts.
        assert all(not r.judgement.valid for r in first)
        assert {r.judgement.invalid_reason for r in first} <= {"unparseable", "truncated"}
        calls = core.model_calls
        again = core.annotate(batch)
        assert core.model_calls == calls
        assert [r.judgement for r in again] == [r.judgement for r in first]
        assert all(r.judgement.completion_tokens > 0 for r in again)
    finally:
        core.close()


def test_a_missing_reference_is_refused_before_any_model_call(engine: ScriptedEngine):
    config = JudgeConfig(
        name="gold", model="scripted", reasoning=True, max_new_tokens=16, reference_guided=True
    )
    core = GoldAnnotatorCore(PointwiseJudge(engine, config), cache=MemoryCache())
    try:
        batch = [
            Sample("a", "q", "r", reference="ref"),
            Sample("b", "q", "r"),
            Sample("c", "q", "r", reference="  "),
        ]
        with pytest.raises(InvalidArgument) as raised:
            core.annotate(batch)
        assert [(p.field, p.reason) for p in raised.value.problems] == [
            ("samples[1].reference", "REQUIRED"),
            ("samples[2].reference", "REQUIRED"),
        ]
        assert engine.batches == []
    finally:
        core.close()


def test_a_sample_too_long_for_the_context_is_refused_naming_the_field():
    engine = ScriptedEngine(context_length=400)
    core = GoldAnnotatorCore(PointwiseJudge(engine, GOLD), cache=MemoryCache())
    try:
        batch = [
            Sample("ok", "q", "fine"),
            Sample("long-response", "q", "word " * 400),
            Sample("long-prompt", "tell me " * 400, "short"),
        ]
        with pytest.raises(InvalidArgument) as raised:
            core.annotate(batch)
        problems = raised.value.problems
        assert [(p.field, p.reason) for p in problems] == [
            ("samples[1].response", "TOO_LONG"),
            ("samples[2].prompt", "TOO_LONG"),
        ]
        assert "400" in problems[0].message and "16" in problems[0].message
        assert engine.batches == []
        assert core.annotate(batch[:1])[0].judgement.valid
    finally:
        core.close()


def test_the_tiny_models_context_is_checked_with_its_tokenizer(tiny_engine: TransformersEngine):
    core = GoldAnnotatorCore(PointwiseJudge(tiny_engine, TINY_GOLD))
    try:
        with pytest.raises(InvalidArgument) as raised:
            core.annotate([Sample("a", "q", "zq " * tiny_engine.context_length)])
        assert raised.value.problems[0].field == "samples[0].response"
        assert core.model_calls == 0
    finally:
        core.close()


def test_a_sample_past_its_timeout_is_an_uncached_engine_error(
    core: GoldAnnotatorCore, engine: ScriptedEngine
):
    engine.gate.clear()
    started = time.monotonic()
    [result] = core.annotate(samples(1), per_sample_timeout_s=0.2)
    assert time.monotonic() - started < 5
    assert (result.judgement.valid, result.judgement.invalid_reason) == (False, "engine_error")
    assert "per-sample timeout" in result.judgement.detail
    assert not result.cached

    engine.gate.set()  # the late answer still lands in the cache
    core.close()  # drains the running batch
    assert core.cache is not None
    key = core.key(samples(1)[0])
    assert key in core.cache.get_many([key])


def test_the_deadline_fails_the_whole_request(core: GoldAnnotatorCore, engine: ScriptedEngine):
    engine.gate.clear()
    try:
        with pytest.raises(DeadlineExceeded):
            core.annotate(samples(2), deadline=time.monotonic() + 0.2)
    finally:
        engine.gate.set()


def test_each_batch_takes_rate_limit_tokens_for_its_samples(engine: ScriptedEngine):
    taken: list[int] = []

    class Counting(RateLimiter):
        def acquire(self, n: int = 1, deadline: float | None = None) -> float:
            taken.append(n)
            return 0.25

    metrics = ServiceMetrics("gold-annotator", "exp")
    core = GoldAnnotatorCore(
        PointwiseJudge(engine, GOLD), rate_limiter=Counting(60), max_batch=4, metrics=metrics
    )
    try:
        core.annotate(samples(6))
    finally:
        core.close()
    assert sorted(taken) == [2, 4]
    assert _metric(metrics, "judgelab_rate_limited_seconds_total") == pytest.approx(0.5)


def test_metrics_count_hits_misses_calls_and_judgements(engine: ScriptedEngine):
    metrics = ServiceMetrics("gold-annotator", "exp")
    core = GoldAnnotatorCore(
        PointwiseJudge(engine, GOLD), cache=MemoryCache(), max_batch=8, metrics=metrics
    )
    try:
        core.annotate(samples(3))
        core.annotate(samples(5))
    finally:
        core.close()
    assert _metric(metrics, "judgelab_cache_hits_total") == 3
    assert _metric(metrics, "judgelab_cache_misses_total") == 5
    assert _metric(metrics, "judgelab_model_calls_total", judge="gold") == 2
    assert _metric(metrics, "judgelab_judgements_total", judge="gold") == 5
    assert _metric(metrics, "judgelab_tokens_in_total", judge="gold") > 0


def test_bad_timeouts_are_refused(engine: ScriptedEngine):
    with pytest.raises(ValueError):
        GoldAnnotatorCore(PointwiseJudge(engine, GOLD), per_sample_timeout_s=0)
    core = GoldAnnotatorCore(PointwiseJudge(engine, GOLD))
    try:
        assert core.per_sample_timeout_s >= 600
        with pytest.raises(ValueError):
            core.annotate(samples(1), per_sample_timeout_s=-1)
    finally:
        core.close()


def _metric(metrics: ServiceMetrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(
        name, {"experiment": "exp", "service": "gold-annotator", **labels}
    )
    assert value is not None, name
    return value


def _hold_the_worker(core: GoldAnnotatorCore, engine: ScriptedEngine) -> None:
    """Close the gate and keep the batcher's worker busy on one unrelated sample."""
    engine.gate.clear()
    core.start([Sample("blocker", [ChatMessage("user", "Blocker?")], "b")])
    limit = time.monotonic() + 5
    while core._batcher.queue_length and time.monotonic() < limit:
        time.sleep(0.01)


def test_concurrent_requests_for_the_same_sample_share_one_model_call(
    core: GoldAnnotatorCore, engine: ScriptedEngine
):
    _hold_the_worker(core, engine)
    first = core.start(samples(3))
    second = core.start(samples(3, prefix="other-"))  # same contents, other ids
    engine.gate.set()
    a, b = first.results(), second.results()
    assert core.judged == 1 + 3
    assert [r.judgement.sample_id for r in b] == ["other-0", "other-1", "other-2"]
    assert [r.judgement.expected for r in a] == [r.judgement.expected for r in b]


def test_a_caller_hanging_up_does_not_cancel_work_another_caller_waits_for(
    core: GoldAnnotatorCore, engine: ScriptedEngine
):
    _hold_the_worker(core, engine)
    leaving = core.start(samples(2))
    staying = core.start(samples(2, prefix="stay-"))
    leaving.cancel()
    engine.gate.set()
    results = staying.results()
    assert all(r.judgement.valid for r in results) and core.judged == 1 + 2


def test_the_last_caller_hanging_up_cancels_the_queued_work(
    core: GoldAnnotatorCore, engine: ScriptedEngine
):
    _hold_the_worker(core, engine)
    first, second = core.start(samples(2)), core.start(samples(2, prefix="again-"))
    first.cancel()
    second.cancel()
    engine.gate.set()
    core.close()
    assert core.judged == 1


def test_a_request_does_not_join_work_that_may_expire_before_its_own_deadline(
    core: GoldAnnotatorCore, engine: ScriptedEngine
):
    _hold_the_worker(core, engine)
    early = core.start(samples(1), deadline=time.monotonic() + 30)
    patient = core.start(samples(1, prefix="patient-"))  # no deadline: must not depend on it
    engine.gate.set()
    early.results()
    patient.results()
    assert core.judged == 1 + 2
