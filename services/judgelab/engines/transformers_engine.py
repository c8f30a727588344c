"""In-process engine on a Hugging Face causal LM (CPU or GPU).

generate: chat template → left-padded batches → ``model.generate``; the
log-probs reported are those of the sampled tokens under the raw model
distribution (``output_logits``), whatever temperature/top-p sampled them.

score_candidates: one forward pass per batch of prompts reads the next-token
log-probs of every single-token candidate; candidates that span several
tokens in context (e.g. "10" = "1" "0") are scored exactly by one more
batched teacher-forced pass, never truncated to their first token.

Speed (see ``prefix_sharing``, measured by bench/judge_pool.py): prompts are
prefilled in length-sorted batches (prefill is compute-bound on CPU: padding is
wasted compute); a prefix shared by several prompts (a judge's instructions +
the question, for the G responses of one prompt) runs once and its rows continue
from its cache; generation decodes many rows together from one cache filled that
way, which then grows in place. RMSNorm and the gated MLP take fused inference forwards
(``fused_ops``).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    Cache,
    GenerationConfig,
    StoppingCriteria,
    StoppingCriteriaList,
)
from transformers.utils import logging as hf_logging

from judgelab.engines import fused_ops, ragged_attention
from judgelab.engines.base import (
    CandidateScores,
    Conversation,
    Engine,
    EngineError,
    Generation,
    SamplingParams,
)
from judgelab.engines.chat import ensure_chat_template, render_prompt
from judgelab.engines.grouped_cache import decoding_groups, grouped_layers, kv_bytes_per_token
from judgelab.engines.mixed_precision import MixedPrecision, autocast
from judgelab.engines.mixed_precision import resolve as resolve_mixed_precision
from judgelab.engines.prefix_sharing import (
    SPLIT_SUFFIX_OVERHEAD,
    SUFFIX_OVERHEAD,
    GrowingLayer,
    PrefixGroup,
    decode_batches,
    growable,
    growing_layers,
    length_batches,
    new_cache,
    prefix_cache,
    prefix_groups,
    run_chunked,
    with_prefix,
)

if TYPE_CHECKING:
    from judgelab.spec.model import ModelSpec

log = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_DEFAULT_CONTEXT_LENGTH = 2048
#: Padded tokens per prefill/scoring batch. On CPU a row of 400+ tokens alone already runs
#: near the matmul peak, and a padded batch needs an explicit mask (no causal skipping), so
#: only short rows are batched (bench/judge_pool.py).
SCORE_BATCH_TOKENS = 1024
#: On CPU, prompts of this many tokens or more are prefilled one at a time (matmuls of 256
#: rows run near their peak here, so batching adds nothing but padding).
SOLO_ROW_TOKENS = 256
#: Most cache bytes per decoding batch (keys and values of every row and position it holds:
#: padded positions too, unless the cache is grouped).
GENERATE_BATCH_BYTES = 4 << 30
#: A decoding step's fixed cost in cached tokens read: on 2 CPU cores a step of the built-in
#: model costs about 80 ms plus about 5 us per cached token, so rows are decoded together
#: even at the price of some padding.
DECODE_STEP_TOKENS = 16384


def select_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise EngineError(f"device {requested!r} requested but CUDA is not available")
    return device


def select_dtype(requested: str, device: torch.device) -> torch.dtype:
    if requested == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return _DTYPES[requested]


class TransformersEngine(Engine):
    """A causal LM + its tokenizer, owned by this engine (calls are serialised by a lock)."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        max_batch_size: int = 8,
        device: torch.device | str | None = None,
        name: str = "transformers",
        context_length: int | None = None,
        share_prefixes: bool = True,
        mixed_precision: MixedPrecision = "no",
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        self.name = name
        self.max_batch_size = max_batch_size
        self.share_prefixes = share_prefixes
        self.score_batch_tokens = SCORE_BATCH_TOKENS
        self.device = torch.device(device) if device is not None else model.device
        self.model = model.to(self.device).eval()
        fused_ops.fuse(self.model)
        self.generate_batch_tokens = GENERATE_BATCH_BYTES // kv_bytes_per_token(
            self.model.config, self.dtype
        )
        self.mixed_precision = resolve_mixed_precision(mixed_precision, self.device)
        self.tokenizer = tokenizer
        ensure_chat_template(tokenizer)
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self._eos_ids = _eos_token_ids(model, tokenizer)
        self._atomic_tokens = [t.content for t in tokenizer.added_tokens_decoder.values()]
        # The engine alone decides how to sample: a checkpoint's sampling defaults
        # (top_k, repetition penalty, ...) must not leak into generate().
        self.model.generation_config = GenerationConfig(
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=self._eos_ids,
            pad_token_id=tokenizer.pad_token_id,
        )
        self._context_length = context_length or _model_context_length(model)
        self._lock = threading.Lock()

    @classmethod
    def from_spec(cls, spec: ModelSpec) -> TransformersEngine:
        source = _resolve_source(spec.name)
        device = select_device(spec.device)
        dtype = select_dtype(spec.dtype, device)
        log.info("loading %s from %s on %s as %s", spec.name, source, device, dtype)
        # A per-tensor "Loading weights" bar in every service log and CLI run says nothing.
        hf_logging.disable_progress_bar()
        try:
            tokenizer = AutoTokenizer.from_pretrained(source)
            model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype)
        except (OSError, ValueError) as exc:
            raise EngineError(f"cannot load model {spec.name!r} from {source}: {exc}") from exc
        return cls(
            model,
            tokenizer,
            max_batch_size=spec.max_batch_size,
            device=device,
            name=spec.name,
            context_length=spec.context_length,
            mixed_precision=spec.mixed_precision,
        )

    def sibling(self, model: Any, name: str | None = None) -> TransformersEngine:
        """An engine on ``model`` (a trained or merged copy of this one's) with this engine's
        tokenizer and settings."""
        engine = TransformersEngine(
            model,
            self.tokenizer,
            max_batch_size=self.max_batch_size,
            device=self.device,
            name=name or self.name,
            context_length=self._context_length,
            share_prefixes=self.share_prefixes,
            mixed_precision=self.mixed_precision,
        )
        engine.score_batch_tokens = self.score_batch_tokens
        engine.generate_batch_tokens = self.generate_batch_tokens
        return engine

    # -- Engine API -----------------------------------------------------------------
    @property
    def context_length(self) -> int:
        return self._context_length

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def count_tokens(self, conversation: Conversation) -> int:
        return len(self._encode(render_prompt(self.tokenizer, conversation)))

    def generate(
        self, conversations: Sequence[Conversation], params: SamplingParams
    ) -> list[Generation]:
        if params.top_logprobs > self.model.config.vocab_size:
            raise ValueError(f"top_logprobs {params.top_logprobs} exceeds the vocabulary size")
        prompts = [
            self._encode(render_prompt(self.tokenizer, c, params.assistant_prefix))
            for c in conversations
        ]
        for ids in prompts:  # before any work: a batch fails whole or not at all
            self._check_fits(len(ids) + params.max_new_tokens)
        results: dict[int, Generation] = {}
        lengths = [len(ids) for ids in prompts]
        with self._lock, torch.inference_mode(), self._seeded(params.seed), self._cpu_attention():
            grouped = ragged_attention.active(self.model)
            for rows in decode_batches(
                lengths,
                self.max_batch_size,
                self.generate_batch_tokens,
                DECODE_STEP_TOKENS,
                ragged=grouped,
            ):
                batch = self._generate_batch([prompts[r] for r in rows], params, grouped)
                results.update(zip(rows, batch, strict=True))
        return [results[row] for row in range(len(prompts))]

    def score_candidates(
        self,
        conversations: Sequence[Conversation],
        candidates: Sequence[str],
        assistant_prefix: str = "",
    ) -> list[CandidateScores]:
        candidates = _check_candidates(candidates)
        prompts = [render_prompt(self.tokenizer, c, assistant_prefix) for c in conversations]
        prompt_ids = [self._encode(p) for p in prompts]
        continuations = self._continuations(prompts, prompt_ids, candidates)
        for ids, conts in zip(prompt_ids, continuations, strict=True):
            # The longest candidate's last token is predicted, never fed in.
            self._check_fits(len(ids) + max(len(t) for t in conts.values()) - 1)
        with self._lock, torch.inference_mode(), self._mixed(), self._cpu_attention():
            scores = self._score_all(prompt_ids, continuations)
        return [CandidateScores(candidates, logprobs) for logprobs in scores]

    def close(self) -> None:
        if self.device.type == "cuda":
            self.model.to("cpu")
            torch.cuda.empty_cache()

    # -- generation -----------------------------------------------------------------
    def _generate_batch(
        self, prompt_ids: list[list[int]], params: SamplingParams, grouped: bool = False
    ) -> list[Generation]:
        input_ids, attention_mask = self._left_pad(prompt_ids)
        width = input_ids.shape[1]
        stopping = StoppingCriteriaList()
        if params.stop:
            stopping.append(_StopOnText(self._decode, width, params.stop))
        out = self.model.generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            generation_config=self._generation_config(params),
            stopping_criteria=stopping,
            past_key_values=self._prefilled(prompt_ids, width + params.max_new_tokens, grouped),
        )
        new_tokens = out.sequences[:, width:]
        steps = _StepLogprobs.of(out.logits, new_tokens, params.top_logprobs)
        return [
            self._finish_row(row, new_tokens[row].tolist(), steps, len(ids), params)
            for row, ids in enumerate(prompt_ids)
        ]

    def _prefilled(
        self, prompt_ids: list[list[int]], capacity: int, grouped: bool = False
    ) -> Cache | None:
        """A cache holding every prompt but its last token, left-padded as in the batch, for
        ``generate`` to continue from. The prompts run in their own passes (``_passes``: none
        of the decoding batch's padding is computed, shared prefixes run once). ``grouped``:
        kept by row group (``grouped_cache``, for ``ragged_attention``). None: ``generate``
        prefills."""
        heads = [ids[:-1] for ids in prompt_ids]
        end = max(map(len, heads))
        if end == 0 or not growable(self.model.config):
            return None
        layers: list[GrowingLayer] = []
        if grouped:
            groups = decoding_groups([len(ids) for ids in prompt_ids], capacity)
            layers.extend(grouped_layers(self.model.config, capacity, groups))
        else:
            layers.extend(growing_layers(self.model.config, capacity))
        with self._mixed():
            self._prefill_into(layers, heads, end)
        for layer in layers:
            layer.set_length(end)
        return Cache(layers=list(layers))

    def _prefill_into(self, layers: list[GrowingLayer], heads: list[list[int]], end: int) -> None:
        """Each row's keys and values, right-aligned at ``end``, in the model's dtype (decoding
        continues in it even when the prefill ran in bfloat16)."""
        dtype = self.dtype
        for done in self._passes(heads):
            for layer, part in zip(layers, done.cache.layers, strict=True):
                assert isinstance(part, GrowingLayer)
                keys, values = part.contents()
                if not layer.is_initialized:
                    layer.allocate(len(heads), keys.to(dtype), values.to(dtype))
                for i, row in enumerate(done.rows):
                    # Right-aligned after any padding: [shared prefix][padding][row's own].
                    own = len(heads[row]) - done.prefix_len
                    layer.place(row, keys[i, :, -own:], values[i, :, -own:], end)
                    cut = done.prefix_len
                    if cut:
                        layer.place(row, keys[i, :, :cut], values[i, :, :cut], end - own)

    def _generation_config(self, params: SamplingParams) -> GenerationConfig:
        sampling = params.temperature > 0
        return GenerationConfig(
            max_new_tokens=params.max_new_tokens,
            do_sample=sampling,
            temperature=params.temperature if sampling else None,
            top_p=params.top_p if sampling else None,
            top_k=0 if sampling else None,  # 0 disables the library default of 50
            eos_token_id=self._eos_ids,
            pad_token_id=self.tokenizer.pad_token_id,
            bos_token_id=self.tokenizer.bos_token_id,
            return_dict_in_generate=True,
            output_logits=True,
        )

    def _finish_row(
        self,
        row: int,
        tokens: list[int],
        steps: _StepLogprobs,
        prompt_tokens: int,
        params: SamplingParams,
    ) -> Generation:
        end = _completion_end(tokens, self._eos_ids, self._decode, params.stop)
        kept = tokens[: end.length]
        text = self._decode(kept)
        if end.stop_string is not None:
            text = text[: text.find(end.stop_string)]
        top: list[dict[str, float]] = []
        if params.top_logprobs:
            top = [self._top_logprobs(steps, row, t) for t in range(len(kept))]
        return Generation(
            text=text,
            token_ids=kept,
            logprobs=steps.chosen[row][: len(kept)],
            finish_reason=end.reason,
            prompt_tokens=prompt_tokens,
            top_logprobs=top,
        )

    def _top_logprobs(self, steps: _StepLogprobs, row: int, step: int) -> dict[str, float]:
        top: dict[str, float] = {}
        values, ids = steps.top_values[row][step], steps.top_ids[row][step]
        for value, token_id in zip(values, ids, strict=True):
            # Distinct ids can decode alike (byte fragments); keep the likelier one.
            top.setdefault(self.tokenizer.decode([token_id]), value)
        return top

    # -- scoring --------------------------------------------------------------------
    def _score_all(
        self, prompt_ids: list[list[int]], continuations: list[dict[str, list[int]]]
    ) -> list[dict[str, float]]:
        single = sorted({t[0] for conts in continuations for t in conts.values() if len(t) == 1})
        next_logprobs = self._next_token_logprobs(prompt_ids, single) if single else None
        column = {token: i for i, token in enumerate(single)}
        multi = self._multi_token_logprobs(prompt_ids, continuations)
        scores = []
        for row, conts in enumerate(continuations):
            logprobs = {}
            for cand, tokens in conts.items():
                if len(tokens) > 1:
                    logprobs[cand] = multi[row, cand]
                else:
                    assert next_logprobs is not None
                    logprobs[cand] = float(next_logprobs[row, column[tokens[0]]])
            scores.append(logprobs)
        return scores

    def _continuations(
        self, prompts: list[str], prompt_ids: list[list[int]], candidates: tuple[str, ...]
    ) -> list[dict[str, list[int]]]:
        """Token ids of each candidate as the model would write it right after each prompt.

        Only the text after the prompt's last special token can change how a candidate
        tokenizes, and chat prompts share that tail ("<|im_start|>assistant\n" + prefix), so
        candidates are tokenized once per distinct tail, not once per prompt.
        """
        by_tail: dict[str, dict[str, list[int]]] = {}
        result = []
        for prompt, ids in zip(prompts, prompt_ids, strict=True):
            tail = self._tail(prompt)
            tail_ids = self._encode(tail)
            if tail_ids != ids[len(ids) - len(tail_ids) :]:
                tail, tail_ids = prompt, ids  # the tail tokenizes differently alone: no shortcut
            if tail not in by_tail:
                by_tail[tail] = {c: self._continuation(tail, tail_ids, c) for c in candidates}
            result.append(by_tail[tail])
        return result

    def _continuation(self, prompt: str, prompt_ids: list[int], candidate: str) -> list[int]:
        joint = self._encode(prompt + candidate)
        if joint[: len(prompt_ids)] == prompt_ids and len(joint) > len(prompt_ids):
            return joint[len(prompt_ids) :]
        # The candidate merged with the prompt's last token (e.g. a tokenizer with a " 7"
        # token after "Score: "). Generation continues from the prompt's own tokens, so score
        # the candidate's stand-alone tokens there.
        return self._encode(candidate)

    def _tail(self, prompt: str) -> str:
        """Text after the last special (atomic) token in ``prompt``."""
        cut = 0
        for token in self._atomic_tokens:
            found = prompt.rfind(token)
            if found >= 0:
                cut = max(cut, found + len(token))
        return prompt[cut:]

    def _next_token_logprobs(self, prompt_ids: list[list[int]], tokens: list[int]) -> torch.Tensor:
        """Log-probs of ``tokens`` right after each prompt: (prompts x tokens)."""
        wanted = torch.tensor(tokens, device=self.device)
        result = torch.empty(len(prompt_ids), len(tokens))
        for rows, logits in self._next_token_logits(prompt_ids):
            result[rows] = torch.log_softmax(logits.float(), dim=-1)[:, wanted].cpu()
        return result

    def _next_token_logits(
        self, prompt_ids: list[list[int]]
    ) -> Iterator[tuple[list[int], torch.Tensor]]:
        """(rows, their next-token logits) batch by batch."""
        for done in self._passes(prompt_ids):
            yield done.rows, done.logits

    def _passes(self, prompt_ids: list[list[int]]) -> Iterator[_Pass]:
        """Forward passes over every non-empty prompt: each shared prefix runs once and its
        rows continue it, the other prompts run in length-sorted batches."""
        overhead = SPLIT_SUFFIX_OVERHEAD if ragged_attention.active(self.model) else SUFFIX_OVERHEAD
        groups = prefix_groups(prompt_ids, suffix_overhead=overhead) if self.share_prefixes else []
        shared = [group for group in groups if group.prefix_len]
        taken = {row for group in shared for row in group.rows}
        plain = [row for row, ids in enumerate(prompt_ids) if ids and row not in taken]
        for batch in self._score_batches([len(prompt_ids[row]) for row in plain]):
            rows = [plain[i] for i in batch]
            input_ids, mask = self._left_pad([prompt_ids[row] for row in rows])
            cache = new_cache(self.model.config, input_ids.shape[1])
            yield _Pass(rows, 0, cache, run_chunked(self.model, input_ids, mask, cache))
        for group in shared:
            yield from self._shared_prefix_passes(prompt_ids, group)

    def _shared_prefix_passes(
        self, prompt_ids: list[list[int]], group: PrefixGroup
    ) -> Iterator[_Pass]:
        cut = group.prefix_len
        prefix = prefix_cache(self.model, prompt_ids[group.rows[0]][:cut], self.device)
        suffixes = [prompt_ids[row][cut:] for row in group.rows]
        for batch in self._score_batches([len(suffix) for suffix in suffixes]):
            input_ids, mask = self._left_pad([suffixes[i] for i in batch])
            cache = with_prefix(self.model.config, prefix, len(batch), cut + input_ids.shape[1])
            logits = run_chunked(self.model, input_ids, mask, cache, cut)
            yield _Pass([group.rows[i] for i in batch], cut, cache, logits)

    def _score_batches(self, lengths: list[int]) -> list[list[int]]:
        # On CPU a long row runs alone: its matmuls are already efficient, and alone it needs
        # no padding, no mask and no chunks.
        solo = SOLO_ROW_TOKENS if self.device.type == "cpu" else None
        return length_batches(lengths, self.max_batch_size, self.score_batch_tokens, solo)

    def _multi_token_logprobs(
        self, prompt_ids: list[list[int]], continuations: list[dict[str, list[int]]]
    ) -> dict[tuple[int, str], float]:
        """Exact log-prob sums of multi-token candidates by teacher forcing.

        Each sequence is the prompt + all but the last candidate token; candidates
        sharing those leading tokens ("10", "11", ...) share one sequence.
        """
        sequences: dict[tuple[int, tuple[int, ...]], list[tuple[str, list[int]]]] = {}
        for row, conts in enumerate(continuations):
            for cand, tokens in conts.items():
                if len(tokens) > 1:
                    sequences.setdefault((row, tuple(tokens[:-1])), []).append((cand, tokens))
        results: dict[tuple[int, str], float] = {}
        keys = list(sequences)
        for start in range(0, len(keys), self.max_batch_size):
            chunk = keys[start : start + self.max_batch_size]
            input_ids, attention_mask = self._left_pad(
                [prompt_ids[r] + list(pre) for r, pre in chunk]
            )
            keep = max(len(pre) for _, pre in chunk) + 1
            logits = self._forward(input_ids, attention_mask, keep_last=keep)
            logprobs = torch.log_softmax(logits.float(), dim=-1).cpu()
            for i, key in enumerate(chunk):
                for cand, tokens in sequences[key]:
                    # Right-aligned: the last len(tokens) kept positions predict the candidate.
                    positions = range(keep - len(tokens), keep)
                    total = sum(
                        float(logprobs[i, p, t]) for p, t in zip(positions, tokens, strict=True)
                    )
                    results[(key[0], cand)] = total
        return results

    def _forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, keep_last: int
    ) -> torch.Tensor:
        # Left padding: positions must count real tokens only, as generate() does.
        position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
        out = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=False,
            logits_to_keep=keep_last,
        )
        return out.logits

    # -- helpers --------------------------------------------------------------------
    def _encode(self, text: str) -> list[int]:
        # The chat template already wrote any BOS; the tokenizer must not add another.
        ids: list[int] = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return ids

    def _decode(self, tokens: list[int]) -> str:
        text: str = self.tokenizer.decode(
            tokens, skip_special_tokens=True, clean_up_tokenization_spaces=False
        )
        return text

    def _left_pad(self, sequences: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(s) for s in sequences)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(s)) + s for s in sequences])
        mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in sequences])
        return input_ids.to(self.device), mask.to(self.device)

    def _cpu_attention(self) -> AbstractContextManager[None]:
        """Attention that skips each decoding row's padding (``ragged_attention``) and
        continues a cached prefix without a mask (``split_attention``)."""
        return ragged_attention.ragged_decoding(self.model)

    def _mixed(self) -> AbstractContextManager[None]:
        """Autocast for the compute-bound passes (prefill, scoring); decoding stays outside."""
        return autocast(self.mixed_precision, self.device)

    def _check_fits(self, tokens: int) -> None:
        if tokens > self.context_length:
            raise EngineError(
                f"{tokens} tokens (prompt + completion) exceed the context length "
                f"{self.context_length} of {self.name}"
            )

    @contextlib.contextmanager
    def _seeded(self, seed: int | None) -> Iterator[None]:
        """Seed torch's RNG for one call without disturbing the caller's RNG state."""
        if seed is None:
            yield
            return
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            yield


class _StopOnText(StoppingCriteria):
    """Stops a row once its completion text (prompt excluded) contains a stop string."""

    def __init__(
        self, decode: Callable[[list[int]], str], prompt_width: int, stops: Sequence[str]
    ) -> None:
        self.decode = decode
        self.prompt_width = prompt_width
        self.stops = tuple(stops)

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        texts = [self.decode(row) for row in input_ids[:, self.prompt_width :].tolist()]
        done = [any(stop in text for stop in self.stops) for text in texts]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


@dataclass(frozen=True)
class _StepLogprobs:
    """Per row and step: log-prob of the generated token and the top-k alternatives."""

    chosen: list[list[float]]
    top_values: list[list[list[float]]]
    top_ids: list[list[list[int]]]

    @classmethod
    def of(cls, logits: Sequence[torch.Tensor], tokens: torch.Tensor, k: int) -> _StepLogprobs:
        """From ``generate``'s raw per-step logits (each batch x vocab): the unscaled
        distribution, one step at a time so no batch x steps x vocab tensor is ever built."""
        chosen, values, ids = [], [], []
        for step, step_logits in enumerate(logits):
            logprobs = torch.log_softmax(step_logits.float(), dim=-1)
            chosen.append(logprobs.gather(1, tokens[:, step : step + 1]).squeeze(1))
            if k:
                top = torch.topk(logprobs, k, dim=-1)
                values.append(top.values)
                ids.append(top.indices)
        return cls(_by_row(chosen), _by_row(values), _by_row(ids))


@dataclass(frozen=True)
class _Pass:
    """One forward pass over ``rows``: the cache it filled (a shared prefix of ``prefix_len``
    positions, then the rows left-padded) and the rows' next-token logits."""

    rows: list[int]
    prefix_len: int
    cache: Cache
    logits: torch.Tensor


def _by_row(per_step: list[torch.Tensor]) -> list[Any]:
    """Per-step tensors (batch, ...) → nested lists indexed [row][step]."""
    return torch.stack(per_step, dim=1).tolist() if per_step else []


@dataclass(frozen=True)
class _End:
    length: int  # tokens kept
    reason: str  # "stop" | "length"
    stop_string: str | None = None  # the stop string the text is cut at


def _completion_end(
    tokens: list[int], eos_ids: list[int], decode: Callable[[list[int]], str], stops: Sequence[str]
) -> _End:
    """Where a generated row really ends: at its first EOS (kept) or the token that completed a
    stop string (kept; the text is cut before the stop string). Padding after that is dropped."""
    eos_at = next((i for i, t in enumerate(tokens) if t in eos_ids), None)
    limit = len(tokens) if eos_at is None else eos_at
    if stops and any(s in decode(tokens[:limit]) for s in stops):
        for length in range(1, limit + 1):
            text = decode(tokens[:length])
            found = [(text.find(s), s) for s in stops if s in text]
            if found:
                return _End(length, "stop", min(found)[1])
    if eos_at is not None:
        return _End(eos_at + 1, "stop")
    return _End(len(tokens), "length")


def _check_candidates(candidates: Sequence[str]) -> tuple[str, ...]:
    result = tuple(candidates)
    if not result:
        raise ValueError("score_candidates needs at least one candidate")
    if any(not c for c in result):
        raise ValueError("candidates must be non-empty strings")
    if len(set(result)) != len(result):
        raise ValueError(f"candidates must be distinct, got {list(result)}")
    return result


def _eos_token_ids(model: Any, tokenizer: Any) -> list[int]:
    ids: list[int] = []
    configured = getattr(model.generation_config, "eos_token_id", None)
    for value in (configured, tokenizer.eos_token_id):
        for token_id in value if isinstance(value, list) else [value]:
            if token_id is not None and token_id not in ids:
                ids.append(int(token_id))
    if not ids:
        raise EngineError("the model has no end-of-sequence token")
    return ids


def _model_context_length(model: Any) -> int:
    length = getattr(model.config, "max_position_embeddings", None)
    if isinstance(length, int) and length > 0:
        return length
    return _DEFAULT_CONTEXT_LENGTH


def _resolve_source(name: str) -> str:
    if name.startswith("builtin:"):
        from judgelab.engines.builtin import ensure_builtin

        return str(ensure_builtin(name))
    path = Path(name).expanduser()
    if path.is_dir():
        return str(path)
    if name.startswith(("/", ".", "~")) or path.is_absolute():
        raise EngineError(f"cannot load model {name!r}: no such directory")
    return name  # a hub id: transformers fetches it (needs network) or finds it in the HF cache
