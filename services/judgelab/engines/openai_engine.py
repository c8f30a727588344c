"""Engine over any OpenAI-compatible chat server: `vllm serve`, llama.cpp's servers, hosted APIs.

Talks ``/v1/chat/completions`` with plain ``httpx`` rather than the ``openai`` SDK: the SDK
retries on its own (we need one retry policy, with Retry-After and full jitter), and
everything beyond the chat call (``/tokenize``, ``/extras/tokenize``, ``max_model_len`` in
``/v1/models``, ``reasoning_content``, vLLM's ``-9999`` stand-in for ``-inf``) is
non-standard JSON that is simpler to read raw than through the SDK's typed models.

Behaviour worth knowing:

* One request per conversation, at most ``max_concurrency`` in flight per event loop;
  each request has a total deadline of ``timeout_s``; transport errors, timeouts, 429 and
  5xx are retried with full-jitter exponential back-off (a Retry-After header wins);
  other 4xx fail at once.
* ``SamplingParams.seed`` seeds conversation ``i`` of a batch with ``seed + i``, so a batch
  of identical prompts (a GRPO group) still gets distinct, reproducible samples.
* ``assistant_prefix`` must be empty: chat APIs cannot portably prefill the assistant turn.
* Token ids are not returned by OpenAI-style chat APIs: ``Generation.token_ids`` is empty,
  ``logprobs`` holds the server's per-token log-probs.
* ``score_candidates`` reads the top-k alternatives (``score_top_logprobs``, default 20) at
  the first generated position. A candidate outside the top k gets ``-inf``: the server
  does not report the mass outside the top k, so a small k biases expected scores towards
  the likely scores (measured by bench/engine_agreement.py). Candidates must be single
  tokens; when the server has a tokenize endpoint (vLLM, llama.cpp) multi-token candidates
  are refused, otherwise they cannot be detected and simply never match.
* The sync API runs on a private event loop in a daemon thread, so it also works when
  called from code that has its own running loop (it blocks that loop meanwhile:
  async code should use the ``a``-prefixed methods).
* ``extra_body`` adds server-specific request fields. llama-cpp-python's server applies
  ``repeat_penalty=1.1``, ``top_k=40`` and ``min_p=0.05`` unless told otherwise, so
  ``temperature=0`` there is not the model's argmax; :data:`LLAMACPP_PLAIN_SAMPLING`
  switches that off. vLLM and OpenAI need nothing.
* The API key (``api_key_env``, or a Secret file named by ``<api_key_env>_FILE``) is sent as a
  bearer token and replaced by ``***`` in every error message and log record.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import weakref
from collections.abc import Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from judgelab.engines import openai_wire as wire
from judgelab.engines.api_keys import resolve_api_key
from judgelab.engines.base import (
    CandidateScores,
    Conversation,
    Engine,
    EngineError,
    Generation,
    SamplingParams,
)
from judgelab.engines.event_loop_thread import BackgroundLoop, close_client_on
from judgelab.engines.openai_wire import JSON
from judgelab.engines.retry import RetryPolicy, is_retryable_status, parse_retry_after
from judgelab.spec.model import ModelSpec

log = logging.getLogger(__name__)

T = TypeVar("T")

# The most alternatives OpenAI and vLLM (its default --max-logprobs) accept per position.
SCORE_TOP_LOGPROBS = 20
_ENGINE_FIELDS = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "temperature",
        "top_p",
        "logprobs",
        "top_logprobs",
        "seed",
        "stop",
        "reasoning_effort",
        "stream",
        "n",
    }
)
# extra_body that makes llama-cpp-python's server sample from the model's own distribution.
LLAMACPP_PLAIN_SAMPLING: dict[str, Any] = {"repeat_penalty": 1.0, "top_k": 0, "min_p": 0.0}
# Statuses with which a server says "I don't have that endpoint / don't take that body".
_UNSUPPORTED_STATUSES = frozenset({400, 404, 405, 422})


class ServerHTTPError(EngineError):
    """A request to the model server failed; ``status_code`` is None for transport errors."""

    def __init__(self, message: str, status_code: int | None) -> None:
        super().__init__(message)
        self.status_code = status_code


@dataclass
class _Session:
    """HTTP client and concurrency bound, both tied to one event loop."""

    client: httpx.AsyncClient
    semaphore: asyncio.Semaphore


class OpenAIEngine(Engine):
    """Generation and candidate scoring through an OpenAI-compatible chat completions API."""

    def __init__(
        self,
        model: str,
        base_url: str,
        *,
        api_key: str | None = None,
        max_concurrency: int = 16,
        timeout_s: float = 600.0,
        max_retries: int = 5,
        context_length: int | None = None,
        retry_policy: RetryPolicy | None = None,
        score_top_logprobs: int = SCORE_TOP_LOGPROBS,
        extra_body: Mapping[str, Any] | None = None,
    ) -> None:
        clashes = sorted(set(extra_body or {}) & _ENGINE_FIELDS)
        if clashes:
            raise ValueError(f"extra_body may not set fields the engine sets: {clashes}")
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self.name = model
        self.base_url = base_url.rstrip("/")
        self.max_concurrency = max_concurrency
        self.timeout_s = timeout_s
        self.score_top_logprobs = score_top_logprobs
        # Server-specific request fields, e.g. llama-cpp-python's {"repeat_penalty": 1.0}.
        self.extra_body: dict[str, Any] = dict(extra_body or {})
        self._api_key = api_key or None
        self._retry = retry_policy or RetryPolicy(max_retries=max_retries)
        self._context_length = context_length
        self._sessions: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Session] = (
            weakref.WeakKeyDictionary()
        )
        self._sessions_lock = threading.Lock()
        self._portal = BackgroundLoop()
        # Which server endpoints work, learnt on first use: "tokenize" | "extras" | "none".
        self._text_tokenizer: str | None = None
        self._chat_counter: str | None = None  # "tokenize" | "usage"
        self._token_count_cache: dict[str, int] = {}
        self._token_baseline: list[int] | None = None
        self._warned_no_logprobs = False

    @classmethod
    def from_spec(cls, spec: ModelSpec) -> OpenAIEngine:
        if spec.engine != "openai" or not spec.base_url:
            raise EngineError(
                f"OpenAIEngine needs engine 'openai' and a base_url, got {spec.engine!r}"
            )
        # The env var, or its _FILE twin (a mounted Secret); registered for log redaction.
        api_key = resolve_api_key(spec.api_key_env) if spec.api_key_env else None
        try:
            return cls._from_checked_spec(spec, api_key)
        except ValueError as err:  # e.g. extra_body overriding a field the engine sets
            raise EngineError(f"model {spec.name!r}: {err}") from None

    @classmethod
    def _from_checked_spec(cls, spec: ModelSpec, api_key: str | None) -> OpenAIEngine:
        assert spec.base_url is not None
        return cls(
            spec.name,
            spec.base_url,
            api_key=api_key,
            max_concurrency=spec.max_concurrency,
            timeout_s=spec.timeout_s,
            max_retries=spec.max_retries,
            context_length=spec.context_length,
            extra_body=dict(spec.extra_body),
            score_top_logprobs=spec.score_top_logprobs,
        )

    def __repr__(self) -> str:
        return f"OpenAIEngine(name={self.name!r}, base_url={self.base_url!r})"

    # -- sync API: every call runs on the private loop --------------------------------
    def generate(
        self, conversations: Sequence[Conversation], params: SamplingParams
    ) -> list[Generation]:
        return self._portal.run(self.agenerate(conversations, params))

    def score_candidates(
        self,
        conversations: Sequence[Conversation],
        candidates: Sequence[str],
        assistant_prefix: str = "",
    ) -> list[CandidateScores]:
        return self._portal.run(self.ascore_candidates(conversations, candidates, assistant_prefix))

    def count_tokens(self, conversation: Conversation) -> int:
        return self._portal.run(self.acount_tokens(conversation))

    @property
    def context_length(self) -> int:
        if self._context_length is None:
            self._context_length = self._portal.run(self.acontext_length())
        return self._context_length

    def close(self) -> None:
        if self._portal.running:
            self._portal.run(self._drop_session())
        self._portal.stop()
        with self._sessions_lock:
            leftovers = list(self._sessions.items())
            self._sessions.clear()
        for loop, session in leftovers:
            close_client_on(loop, session.client)

    async def aclose(self) -> None:
        await self._drop_session()
        await asyncio.to_thread(self.close)

    # -- generation ---------------------------------------------------------------------
    async def agenerate(
        self, conversations: Sequence[Conversation], params: SamplingParams
    ) -> list[Generation]:
        wire.reject_assistant_prefix(params.assistant_prefix)
        payloads = [
            self._chat_payload(conversation, params, index)
            for index, conversation in enumerate(conversations)
        ]
        bodies = await _gather_or_cancel(self._post_chat(p) for p in payloads)
        return [self._generation_from(body, params.top_logprobs > 0) for body in bodies]

    def _chat_payload(self, conversation: Conversation, params: SamplingParams, index: int) -> JSON:
        payload: JSON = {
            **self.extra_body,
            "model": self.name,
            "messages": wire.messages(conversation),
            "max_tokens": params.max_new_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "logprobs": True,
            # Always sent: llama-cpp-python returns no log-probs at all without it.
            "top_logprobs": params.top_logprobs,
        }
        if params.seed is not None:
            payload["seed"] = params.seed + index
        if params.stop:
            payload["stop"] = list(params.stop)
        if params.reasoning_effort:
            payload["reasoning_effort"] = params.reasoning_effort
        return payload

    def _generation_from(self, body: JSON, want_top_logprobs: bool) -> Generation:
        choice = wire.first_choice(body)
        message = choice.get("message") or {}
        entries = wire.logprob_entries(choice)
        text = message.get("content") or ""
        if entries is None and text and not self._warned_no_logprobs:
            self._warned_no_logprobs = True
            log.warning(
                "server at %s returned no log-probs; Generation.logprobs stay empty", self.base_url
            )
        entries = entries or []
        usage = body.get("usage") or {}
        return Generation(
            text=text,
            token_ids=[],
            logprobs=[wire.logprob(entry.get("logprob")) for entry in entries],
            finish_reason=choice.get("finish_reason") or "stop",
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            top_logprobs=[wire.top_logprob_dict(entry) for entry in entries]
            if want_top_logprobs
            else [],
            reasoning=message.get("reasoning_content") or message.get("reasoning") or None,
        )

    # -- scoring ------------------------------------------------------------------------
    async def ascore_candidates(
        self,
        conversations: Sequence[Conversation],
        candidates: Sequence[str],
        assistant_prefix: str = "",
    ) -> list[CandidateScores]:
        wire.reject_assistant_prefix(assistant_prefix)
        wanted = wire.validate_candidates(candidates)
        await self._refuse_multi_token(wanted)
        payloads = [self._score_payload(conversation) for conversation in conversations]
        bodies = await _gather_or_cancel(self._post_chat(p) for p in payloads)
        return [wire.candidate_scores(wanted, self._first_position(body)) for body in bodies]

    def _score_payload(self, conversation: Conversation) -> JSON:
        return {
            **self.extra_body,
            "model": self.name,
            "messages": wire.messages(conversation),
            "max_tokens": 1,
            "temperature": 0.0,
            "logprobs": True,
            "top_logprobs": self.score_top_logprobs,
        }

    def _first_position(self, body: JSON) -> list[tuple[str, float]]:
        entries = wire.logprob_entries(wire.first_choice(body))
        if not entries:
            raise EngineError(
                f"server at {self.base_url} returned no log-probs for a scoring request; "
                "candidate scoring needs logprobs=True and top_logprobs support"
            )
        first = entries[0].get("top_logprobs") or []
        return [(str(alt.get("token", "")), wire.logprob(alt.get("logprob"))) for alt in first]

    async def _refuse_multi_token(self, candidates: tuple[str, ...]) -> None:
        stripped = {c: c.strip() for c in candidates}
        counts = await self._text_token_counts([t for s in stripped.values() for t in (s, " " + s)])
        if counts is None:
            return  # no tokenizer endpoint: multi-token candidates cannot be detected
        multi = [c for c, s in stripped.items() if counts[s] != 1 and counts[" " + s] != 1]
        if multi:
            raise EngineError(
                f"candidates {multi} span several tokens; chat log-probs only score the first "
                "generated token, so every candidate must be a single token"
            )

    # -- tokens -------------------------------------------------------------------------
    async def acount_tokens(self, conversation: Conversation) -> int:
        """Prompt tokens of a conversation, chat template included.

        vLLM's ``/tokenize`` answers exactly; otherwise a one-token completion is
        requested and its ``usage.prompt_tokens`` read (exact, costs one prefill);
        a server that reports no usage gets a deliberately high estimate.
        """
        messages = wire.messages(conversation)
        if self._chat_counter in (None, "tokenize"):
            count = await self._tokenize_chat(messages)
            if count is not None:
                self._chat_counter = "tokenize"
                return count
            self._chat_counter = "usage"
        body = await self._post_chat(
            {"model": self.name, "messages": messages, "max_tokens": 1, "temperature": 0.0}
        )
        prompt_tokens = (body.get("usage") or {}).get("prompt_tokens")
        if isinstance(prompt_tokens, int) and prompt_tokens > 0:
            return prompt_tokens
        log.warning("server at %s reports no usage; estimating prompt tokens", self.base_url)
        return wire.estimate_prompt_tokens(messages)

    async def acontext_length(self) -> int:
        if self._context_length is not None:
            return self._context_length
        models = await self._request("GET", f"{self.base_url}/models")
        found = wire.context_length_from_models(models, self.name)
        if found is None:
            props = await self._optional_request("GET", f"{self._root_url}/props")
            found = wire.context_length_from_props(props) if props else None
        if found is None:
            raise EngineError(
                f"the server at {self.base_url} does not report the context length of "
                f"{self.name!r}; set context_length in the model spec"
            )
        self._context_length = found
        return found

    async def _tokenize_chat(self, messages: list[JSON]) -> int | None:
        body = await self._optional_request(
            "POST",
            f"{self._root_url}/tokenize",
            {"model": self.name, "messages": messages, "add_generation_prompt": True},
        )
        count = (body or {}).get("count")
        return count if isinstance(count, int) else None

    async def _text_token_counts(self, texts: Sequence[str]) -> dict[str, int] | None:
        """Tokens in each text, less the special tokens the endpoint adds; None if unknown."""
        if self._token_baseline is None:
            # Tokenizing "" finds the endpoint once and what it always adds (e.g. a BOS).
            self._token_baseline = await self._tokenize_text("")
            if self._token_baseline is None:
                return None
        missing = sorted({t for t in texts if t not in self._token_count_cache})
        for text, tokens in zip(
            missing, await asyncio.gather(*map(self._tokenize_text, missing)), strict=True
        ):
            if tokens is None:
                return None
            self._token_count_cache[text] = len(tokens) - len(self._token_baseline)
        return {text: self._token_count_cache[text] for text in texts}

    async def _tokenize_text(self, text: str) -> list[int] | None:
        kinds = ["tokenize", "extras"] if self._text_tokenizer is None else [self._text_tokenizer]
        for kind in kinds:
            if kind == "tokenize":
                # One body for vLLM ("prompt") and llama.cpp's llama-server ("content").
                url = f"{self._root_url}/tokenize"
                payload: JSON = {
                    "model": self.name,
                    "prompt": text,
                    "content": text,
                    "add_special_tokens": False,
                    "add_special": False,
                }
            elif kind == "extras":  # llama-cpp-python's server
                url = f"{self._root_url}/extras/tokenize"
                payload = {"model": self.name, "input": text}
            else:
                break
            tokens = ((await self._optional_request("POST", url, payload)) or {}).get("tokens")
            if isinstance(tokens, list):
                self._text_tokenizer = kind
                return tokens
        self._text_tokenizer = "none"
        return None

    @property
    def _root_url(self) -> str:
        return self.base_url.removesuffix("/v1")

    # -- HTTP ---------------------------------------------------------------------------
    async def _post_chat(self, payload: JSON) -> JSON:
        return await self._request("POST", f"{self.base_url}/chat/completions", payload)

    async def _optional_request(
        self, method: str, url: str, payload: JSON | None = None
    ) -> JSON | None:
        """Like ``_request``, but None when the server lacks the endpoint."""
        try:
            return await self._request(method, url, payload)
        except ServerHTTPError as exc:
            if exc.status_code in _UNSUPPORTED_STATUSES:
                return None
            raise

    async def _request(self, method: str, url: str, payload: JSON | None = None) -> JSON:
        session = self._session()
        attempt = 0
        while True:
            status, retry_after = None, None
            try:
                async with session.semaphore, asyncio.timeout(self.timeout_s):
                    response = await session.client.request(method, url, json=payload)
            except TimeoutError:
                failure = f"no response within timeout_s={self.timeout_s:g}"
            except httpx.UnsupportedProtocol as exc:
                raise ServerHTTPError(self._redact(f"{method} {url}: {exc}"), None) from None
            except httpx.TransportError as exc:
                failure = f"{type(exc).__name__}: {exc}".rstrip(": ")
            else:
                if response.is_success:
                    return self._json(response, method, url)
                status = response.status_code
                failure = f"HTTP {status}: {response.text[:500]}"
                if not is_retryable_status(status):
                    raise ServerHTTPError(self._redact(f"{method} {url} failed: {failure}"), status)
                retry_after = parse_retry_after(response.headers.get("retry-after"))
            if attempt >= self._retry.max_retries:
                attempts = f"{attempt + 1} attempt(s)"
                raise ServerHTTPError(
                    self._redact(f"{method} {url} failed after {attempts}: {failure}"), status
                )
            delay = self._retry.delay_s(attempt, retry_after)
            log.warning(
                "%s %s: %s; retry %d/%d in %.2fs",
                method,
                url,
                self._redact(failure),
                attempt + 1,
                self._retry.max_retries,
                delay,
            )
            await asyncio.sleep(delay)
            attempt += 1

    def _json(self, response: httpx.Response, method: str, url: str) -> JSON:
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            got = response.text[:200]
            raise ServerHTTPError(
                self._redact(f"{method} {url}: expected a JSON object, got {got!r}"),
                response.status_code,
            )
        return body

    def _redact(self, text: str) -> str:
        return text.replace(self._api_key, "***") if self._api_key else text

    def _session(self) -> _Session:
        loop = asyncio.get_running_loop()
        with self._sessions_lock:
            session = self._sessions.get(loop)
            if session is None:
                headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
                client = httpx.AsyncClient(
                    headers=headers,
                    timeout=httpx.Timeout(self.timeout_s),
                    limits=httpx.Limits(
                        max_connections=self.max_concurrency + 4,
                        max_keepalive_connections=self.max_concurrency,
                    ),
                )
                session = _Session(client, asyncio.Semaphore(self.max_concurrency))
                self._sessions[loop] = session
            return session

    async def _drop_session(self) -> None:
        with self._sessions_lock:
            session = self._sessions.pop(asyncio.get_running_loop(), None)
        if session is not None:
            await session.client.aclose()


# -- helpers ------------------------------------------------------------------------------
async def _gather_or_cancel(coros: Iterable[Coroutine[Any, Any, T]]) -> list[T]:
    """Run all at once; on the first failure cancel the rest instead of leaving them running."""
    tasks = [asyncio.ensure_future(coro) for coro in coros]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
