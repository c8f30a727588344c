"""OpenAIEngine against a scripted in-process fake of an OpenAI-compatible server."""

from __future__ import annotations

import asyncio
import json
import math
import random
import socket
import threading
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from judgelab.engines.base import ChatMessage, EngineError, SamplingParams
from judgelab.engines.openai_engine import OpenAIEngine
from judgelab.engines.retry import RetryPolicy, is_retryable_status, parse_retry_after
from judgelab.spec.model import ModelSpec

CONVERSATION = [ChatMessage("system", "Be brief."), ChatMessage("user", "Say hi.")]
DIGITS = tuple(str(d) for d in range(10))


# -- the fake server ----------------------------------------------------------------------
@dataclass
class Reply:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


class FakeServer:
    """Replies to each path from a script (the last reply repeats); 404 for unscripted paths."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self.max_in_flight = 0
        self._in_flight = 0
        self._scripts: dict[str, list[Reply]] = {}
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def script(self, path: str, *replies: Reply) -> None:
        self._scripts[path] = list(replies)

    def requests_to(self, path: str) -> list[Seen]:
        return [s for s in self.seen if s.path == path]

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def answer(self, seen: Seen) -> Reply:
        with self._lock:
            self.seen.append(seen)
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
            script = self._scripts.get(seen.path)
            reply = (script.pop(0) if len(script) > 1 else script[0]) if script else Reply(404, {})
        time.sleep(reply.delay_s)
        with self._lock:
            self._in_flight -= 1
        return reply


def _handler_for(fake: FakeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._serve(None)

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self._serve(json.loads(raw) if raw else None)

        def _serve(self, body: Any) -> None:
            seen = Seen(self.command, self.path, {k.lower(): v for k, v in self.headers.items()},
                        body)
            reply = fake.answer(seen)
            payload = reply.body if isinstance(reply.body, str) else json.dumps(reply.body)
            try:
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload.encode())))
                self.end_headers()
                self.wfile.write(payload.encode())
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (timeout tests)

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


def chat_body(
    text: str = "hi",
    tokens: list[tuple[str, float, list[tuple[str, float]]]] | None = None,
    *,
    prompt_tokens: int = 11,
    finish_reason: str = "stop",
    reasoning: dict[str, str] | None = None,
) -> dict[str, Any]:
    tokens = tokens if tokens is not None else [("hi", -0.25, [("hi", -0.25), ("hey", -1.5)])]
    content = [
        {"token": tok, "logprob": lp, "top_logprobs": [{"token": t, "logprob": v} for t, v in top]}
        for tok, lp, top in tokens
    ]
    message = {"role": "assistant", "content": text, **(reasoning or {})}
    return {
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason,
                     "logprobs": {"content": content}}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": len(content)},
    }


def first_position(alternatives: list[tuple[str, float]]) -> dict[str, Any]:
    token, logprob = alternatives[0]
    return chat_body(token, [(token, logprob, alternatives)])


FAST_RETRY = RetryPolicy(max_retries=3, base_delay_s=0.01, max_delay_s=0.05, rng=random.Random(0))


@pytest.fixture
def fake() -> Iterator[FakeServer]:
    server = FakeServer()
    yield server
    server.stop()


@pytest.fixture
def make_engine(fake: FakeServer) -> Iterator[Any]:
    engines: list[OpenAIEngine] = []

    def make(**overrides: Any) -> OpenAIEngine:
        options: dict[str, Any] = {"retry_policy": FAST_RETRY, "timeout_s": 5.0}
        options.update(overrides)
        engine = OpenAIEngine("served-model", options.pop("base_url", fake.base_url), **options)
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.close()


# -- generation ---------------------------------------------------------------------------
def test_generate_sends_sampling_params_and_maps_logprobs(fake: FakeServer, make_engine: Any):
    fake.script("/v1/chat/completions", Reply(body=chat_body(
        "Hi there",
        [("Hi", -0.1, [("Hi", -0.1), ("Hello", -2.5)]),
         (" there", -0.7, [(" there", -0.7), ("!", -1.2), ("!", -1.9)])],
        prompt_tokens=13, finish_reason="length",
        reasoning={"reasoning_content": "The user wants a greeting."},
    )))
    params = SamplingParams(max_new_tokens=5, temperature=0.7, top_p=0.9, seed=41,
                            stop=("\n",), top_logprobs=2, reasoning_effort="low")

    generations = make_engine().generate([CONVERSATION, CONVERSATION], params)

    sent = [s.body for s in fake.requests_to("/v1/chat/completions")]
    assert sorted(body["seed"] for body in sent) == [41, 42]  # distinct per conversation
    first = sent[0]
    assert first["model"] == "served-model"
    assert first["messages"] == [{"role": "system", "content": "Be brief."},
                                 {"role": "user", "content": "Say hi."}]
    assert (first["max_tokens"], first["temperature"], first["top_p"]) == (5, 0.7, 0.9)
    assert (first["stop"], first["logprobs"], first["top_logprobs"]) == (["\n"], True, 2)
    assert first["reasoning_effort"] == "low"
    g = generations[0]
    assert (g.text, g.finish_reason, g.prompt_tokens) == ("Hi there", "length", 13)
    assert g.token_ids == [] and g.logprobs == [-0.1, -0.7]
    assert g.reasoning == "The user wants a greeting."
    assert g.top_logprobs[0] == {"Hi": -0.1, "Hello": -2.5}
    assert g.top_logprobs[1]["!"] == pytest.approx(math.log(math.exp(-1.2) + math.exp(-1.9)))


def test_generate_without_top_logprobs_maps_sentinels_and_reasoning_field(
    fake: FakeServer, make_engine: Any
):
    fake.script("/v1/chat/completions", Reply(body=chat_body(
        "ok", [("ok", -9999.0, [])], reasoning={"reasoning": "short"})))

    [g] = make_engine().generate([CONVERSATION], SamplingParams(max_new_tokens=2))

    assert g.logprobs == [-math.inf] and g.top_logprobs == []
    assert g.reasoning == "short"
    sent = fake.requests_to("/v1/chat/completions")[0].body
    assert sent["top_logprobs"] == 0 and "seed" not in sent and "reasoning_effort" not in sent


def test_extra_body_is_sent_but_cannot_override_engine_fields(fake: FakeServer, make_engine: Any):
    fake.script("/v1/chat/completions", Reply(body=first_position([("5", -0.1)])))
    engine = make_engine(extra_body={"repeat_penalty": 1.0, "top_k": 0})
    engine.generate([CONVERSATION], SamplingParams())
    engine.score_candidates([CONVERSATION], ("5",))
    for seen in fake.requests_to("/v1/chat/completions"):
        assert (seen.body["repeat_penalty"], seen.body["top_k"]) == (1.0, 0)
    with pytest.raises(ValueError, match="temperature"):
        make_engine(extra_body={"temperature": 2.0})


def test_assistant_prefix_is_refused_before_any_request(fake: FakeServer, make_engine: Any):
    engine = make_engine()
    with pytest.raises(EngineError, match="assistant_prefix"):
        engine.generate([CONVERSATION], SamplingParams(assistant_prefix="Score:"))
    with pytest.raises(EngineError, match="assistant_prefix"):
        engine.score_candidates([CONVERSATION], DIGITS, assistant_prefix="Score:")
    assert fake.seen == []


def test_sync_api_works_inside_a_running_event_loop(fake: FakeServer, make_engine: Any):
    fake.script("/v1/chat/completions", Reply(body=chat_body("inside")))
    engine = make_engine()

    async def caller() -> str:
        return engine.generate([CONVERSATION], SamplingParams())[0].text

    assert asyncio.run(caller()) == "inside"
    assert asyncio.run(engine.agenerate([CONVERSATION], SamplingParams()))[0].text == "inside"


# -- retries, timeouts, concurrency -------------------------------------------------------
def test_429_is_retried_after_the_servers_retry_after(fake: FakeServer, make_engine: Any):
    fake.script("/v1/chat/completions",
                Reply(429, {"error": "slow down"}, headers={"Retry-After": "0.3"}),
                Reply(body=chat_body("after wait")))
    # A huge jittered back-off shows the Retry-After header is what set the wait.
    engine = make_engine(retry_policy=RetryPolicy(max_retries=2, base_delay_s=60.0))

    started = time.monotonic()
    [g] = engine.generate([CONVERSATION], SamplingParams())

    assert g.text == "after wait"
    assert 0.3 <= time.monotonic() - started < 3.0
    assert len(fake.requests_to("/v1/chat/completions")) == 2


def test_5xx_is_retried_then_reported(fake: FakeServer, make_engine: Any):
    fake.script("/v1/chat/completions", Reply(503, {"error": "overloaded"}))
    engine = make_engine(retry_policy=RetryPolicy(max_retries=2, base_delay_s=0.01))

    with pytest.raises(EngineError, match=r"after 3 attempt\(s\): HTTP 503.*overloaded"):
        engine.generate([CONVERSATION], SamplingParams())
    assert len(fake.requests_to("/v1/chat/completions")) == 3


def test_500_then_success(fake: FakeServer, make_engine: Any):
    fake.script("/v1/chat/completions", Reply(500, {}), Reply(502, {}), Reply(body=chat_body("ok")))
    assert make_engine().generate([CONVERSATION], SamplingParams())[0].text == "ok"
    assert len(fake.requests_to("/v1/chat/completions")) == 3


def test_400_is_not_retried(fake: FakeServer, make_engine: Any):
    fake.script("/v1/chat/completions", Reply(400, {"error": "bad top_logprobs"}))
    with pytest.raises(EngineError, match="HTTP 400.*bad top_logprobs") as caught:
        make_engine().generate([CONVERSATION], SamplingParams())
    assert getattr(caught.value, "status_code", None) == 400
    assert len(fake.requests_to("/v1/chat/completions")) == 1


def test_slow_response_times_out_and_is_retried(fake: FakeServer, make_engine: Any):
    fake.script("/v1/chat/completions", Reply(body=chat_body("late"), delay_s=1.5),
                Reply(body=chat_body("on time")))
    started = time.monotonic()
    [g] = make_engine(timeout_s=0.3).generate([CONVERSATION], SamplingParams())
    assert g.text == "on time"
    assert time.monotonic() - started < 1.2


def test_timeout_without_retries_fails(fake: FakeServer, make_engine: Any):
    fake.script("/v1/chat/completions", Reply(body=chat_body(), delay_s=1.5))
    engine = make_engine(timeout_s=0.2, retry_policy=RetryPolicy(max_retries=0))
    with pytest.raises(EngineError, match="timeout_s=0.2"):
        engine.generate([CONVERSATION], SamplingParams())


def test_unreachable_server_is_retried_then_reported(make_engine: Any):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again below: nothing listens there
    engine = make_engine(base_url=f"http://127.0.0.1:{port}/v1",
                         retry_policy=RetryPolicy(max_retries=2, base_delay_s=0.01))
    with pytest.raises(EngineError, match=r"after 3 attempt\(s\): ConnectError"):
        engine.generate([CONVERSATION], SamplingParams())


def test_requests_in_flight_never_exceed_max_concurrency(fake: FakeServer, make_engine: Any):
    fake.script("/v1/chat/completions", Reply(body=chat_body(), delay_s=0.15))
    make_engine(max_concurrency=2).generate([CONVERSATION] * 6, SamplingParams())
    assert len(fake.requests_to("/v1/chat/completions")) == 6
    assert fake.max_in_flight == 2


# -- API key ------------------------------------------------------------------------------
def test_api_key_is_sent_as_bearer_and_redacted_from_errors(
    fake: FakeServer, monkeypatch: pytest.MonkeyPatch
):
    secret = "sk-test-5e3cr3t-value"
    monkeypatch.setenv("JUDGELAB_TEST_KEY", secret)
    fake.script("/v1/chat/completions",
                Reply(401, {"error": f"Incorrect API key provided: {secret}"}))
    spec = ModelSpec(engine="openai", name="served-model", base_url=fake.base_url,
                     api_key_env="JUDGELAB_TEST_KEY")
    engine = OpenAIEngine.from_spec(spec)
    try:
        with pytest.raises(EngineError) as caught:
            engine.generate([CONVERSATION], SamplingParams())
    finally:
        engine.close()

    assert fake.seen[0].headers["authorization"] == f"Bearer {secret}"
    shown = "".join(traceback.format_exception(caught.value)) + repr(engine)
    assert "HTTP 401" in shown and "***" in shown
    assert secret not in shown


def test_missing_api_key_variable_is_an_error(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("JUDGELAB_ABSENT_KEY", raising=False)
    spec = ModelSpec(engine="openai", name="m", base_url="http://127.0.0.1:1/v1",
                     api_key_env="JUDGELAB_ABSENT_KEY")
    with pytest.raises(EngineError, match="JUDGELAB_ABSENT_KEY"):
        OpenAIEngine.from_spec(spec)


def test_spec_extra_body_reaches_the_request(fake: FakeServer):
    fake.script("/v1/chat/completions", Reply(body=chat_body()))
    spec = ModelSpec(engine="openai", name="m", base_url=fake.base_url,
                     extra_body={"repeat_penalty": 1.0, "top_k": 0})
    engine = OpenAIEngine.from_spec(spec)
    try:
        engine.generate([CONVERSATION], SamplingParams())
    finally:
        engine.close()
    sent = fake.seen[0].body
    assert sent["repeat_penalty"] == 1.0 and sent["top_k"] == 0


def test_spec_extra_body_cannot_override_engine_fields():
    spec = ModelSpec(engine="openai", name="m", base_url="http://127.0.0.1:1/v1",
                     extra_body={"temperature": 2.0})
    with pytest.raises(EngineError, match="temperature"):
        OpenAIEngine.from_spec(spec)


def test_no_authorization_header_without_a_key(fake: FakeServer, make_engine: Any):
    fake.script("/v1/chat/completions", Reply(body=chat_body()))
    make_engine().generate([CONVERSATION], SamplingParams())
    assert "authorization" not in fake.seen[0].headers


# -- candidate scoring --------------------------------------------------------------------
def test_scores_merge_space_variants_and_leave_absent_candidates_at_minus_inf(
    fake: FakeServer, make_engine: Any
):
    fake.script("/v1/chat/completions", Reply(body=first_position(
        [("7", -0.5), (" 7", -1.5), ("8", -2.0), (" 8", -2.0), ("The", -3.0), ("7", -0.5)])))

    [scores] = make_engine().score_candidates([CONVERSATION], DIGITS)

    sent = fake.requests_to("/v1/chat/completions")[0].body
    assert (sent["max_tokens"], sent["temperature"]) == (1, 0.0)
    assert (sent["logprobs"], sent["top_logprobs"]) == (True, 20)
    assert scores.logprobs["7"] == pytest.approx(math.log(math.exp(-0.5) + math.exp(-1.5)))
    assert scores.logprobs["8"] == pytest.approx(math.log(2 * math.exp(-2.0)))
    assert all(scores.logprobs[d] == -math.inf for d in DIGITS if d not in "78")
    assert sum(scores.probs.values()) == pytest.approx(1.0)
    assert scores.probs["7"] > scores.probs["8"] > 0


def test_candidates_with_spaces_match_bare_tokens(fake: FakeServer, make_engine: Any):
    fake.script("/v1/chat/completions", Reply(body=first_position([("Yes", -0.2), ("No", -1.8)])))
    [scores] = make_engine().score_candidates([CONVERSATION], (" Yes", " No"))
    assert scores.logprobs == {" Yes": -0.2, " No": -1.8}


def test_candidates_equal_up_to_whitespace_are_refused(make_engine: Any):
    with pytest.raises(ValueError, match="same token"):
        make_engine().score_candidates([CONVERSATION], ("5", " 5"))


def test_scoring_needs_logprobs_from_the_server(fake: FakeServer, make_engine: Any):
    body = chat_body("5")
    body["choices"][0]["logprobs"] = None
    fake.script("/v1/chat/completions", Reply(body=body))
    with pytest.raises(EngineError, match="no log-probs"):
        make_engine().score_candidates([CONVERSATION], DIGITS)


def _char_tokenizer(text: str, bos: list[int]) -> dict[str, Any]:
    return {"tokens": bos + [ord(c) for c in text]}


class _TokenizingServer(FakeServer):
    """Answers tokenize requests with one token per character, like vLLM or llama-cpp-python."""

    def __init__(self, path: str, bos: list[int]) -> None:
        super().__init__()
        self.tokenize_path, self.bos = path, bos

    def answer(self, seen: Seen) -> Reply:
        if seen.path == self.tokenize_path and seen.body:
            text = seen.body.get("input", seen.body.get("prompt"))
            with self._lock:
                self.seen.append(seen)
            return Reply(body=_char_tokenizer(text, self.bos))
        return super().answer(seen)


@pytest.mark.parametrize(("path", "bos"), [("/tokenize", []), ("/extras/tokenize", [1])])
def test_multi_token_candidates_are_named_in_the_error(path: str, bos: list[int]):
    server = _TokenizingServer(path, bos)
    engine = OpenAIEngine("served-model", server.base_url, retry_policy=FAST_RETRY)
    try:
        with pytest.raises(EngineError, match=r"\['10', 'ten'\] span several tokens"):
            engine.score_candidates([CONVERSATION], ("9", "10", "ten"))
        server.script("/v1/chat/completions", Reply(body=first_position([("9", -0.1)])))
        [scores] = engine.score_candidates([CONVERSATION], ("8", "9"))  # single chars pass
        assert scores.probs == {"8": 0.0, "9": 1.0}
    finally:
        engine.close()
        server.stop()


# -- tokens and context -------------------------------------------------------------------
def test_count_tokens_uses_the_tokenize_endpoint(fake: FakeServer, make_engine: Any):
    fake.script("/tokenize", Reply(body={"count": 23, "max_model_len": 4096, "tokens": [0] * 23}))
    engine = make_engine()
    assert engine.count_tokens(CONVERSATION) == 23
    sent = fake.requests_to("/tokenize")[0].body
    assert sent["messages"][1] == {"role": "user", "content": "Say hi."}
    assert sent["add_generation_prompt"] is True


def test_count_tokens_falls_back_to_reported_usage(fake: FakeServer, make_engine: Any):
    fake.script("/v1/chat/completions", Reply(body=chat_body(prompt_tokens=31)))
    engine = make_engine()
    assert engine.count_tokens(CONVERSATION) == 31
    assert engine.count_tokens(CONVERSATION) == 31
    assert len(fake.requests_to("/tokenize")) == 1  # learnt once that it is missing
    assert fake.requests_to("/v1/chat/completions")[0].body["max_tokens"] == 1


def test_context_length_from_models_metadata(fake: FakeServer, make_engine: Any):
    fake.script("/v1/models", Reply(body={"data": [{"id": "other", "max_model_len": 1},
                                                   {"id": "served-model", "max_model_len": 8192}]}))
    assert make_engine().context_length == 8192


def test_context_length_from_the_spec_needs_no_server(make_engine: Any):
    assert make_engine(base_url="http://127.0.0.1:1/v1", context_length=2048).context_length == 2048


def test_unknown_context_length_says_how_to_fix_it(fake: FakeServer, make_engine: Any):
    fake.script("/v1/models", Reply(body={"data": [{"id": "served-model"}]}))
    with pytest.raises(EngineError, match="set context_length in the model spec"):
        _ = make_engine().context_length


# -- retry policy -------------------------------------------------------------------------
def test_retryable_statuses():
    assert [s for s in (200, 400, 401, 404, 408, 429, 500, 503, 599) if is_retryable_status(s)] \
        == [429, 500, 503, 599]


def test_retry_after_parsing():
    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("7", now) == 7.0
    assert parse_retry_after("0.5", now) == 0.5
    assert parse_retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True), now) == 30
    assert parse_retry_after(format_datetime(now - timedelta(seconds=30), usegmt=True), now) == 0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None


def test_full_jitter_backoff_grows_and_stays_under_its_cap():
    policy = RetryPolicy(base_delay_s=1.0, max_delay_s=8.0, rng=random.Random(7))
    for attempt, ceiling in [(0, 1.0), (1, 2.0), (2, 4.0), (3, 8.0), (6, 8.0)]:
        delays = [policy.delay_s(attempt) for _ in range(200)]
        assert all(0.0 <= d <= ceiling for d in delays)
        assert max(delays) > 0.8 * ceiling and min(delays) < 0.2 * ceiling  # full jitter
    assert policy.delay_s(0, retry_after_s=12.0) == 12.0
    assert RetryPolicy(max_retry_after_s=60.0).delay_s(0, retry_after_s=3600.0) == 60.0
