"""Judge-data responses sampled from the policy's starting model, kept in an append-only log.

Each batch's responses are appended to ``responses.jsonl`` (and fsynced) before anything uses
them, so a rerun after a crash samples only the records that have none yet. Lines carry the
hash of what made them (model, sampling settings, seed); a changed spec resamples.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from judgelab.engines.base import ChatMessage, Engine, SamplingParams
from judgelab.judging.samples import Prompt
from judgelab.spec.data import ResponseSampling
from judgelab.spec.model import ModelSpec
from judgelab.units.jsonio import AppendLog
from judgelab.units.progress import ProgressFn, Step
from judgelab.units.records import Record

RESPONSES_FILE = "responses.jsonl"


class Cancelled(RuntimeError):
    """The caller asked the unit to stop; what is written so far is kept for a rerun."""


@dataclass(frozen=True)
class SampledResponse:
    record_id: str
    index: int
    text: str
    finish_reason: str
    completion_tokens: int


def sampling_hash(model: ModelSpec, sampling: ResponseSampling, seed: int) -> str:
    """What decides the sampled responses, hashed (the model's serving limits left out)."""
    decisive = {
        "model": model.name,
        "engine": model.engine,
        "dtype": model.dtype,
        "extra_body": model.extra_body,
        "sampling": sampling.model_dump(exclude={"model"}),
        "seed": seed,
    }
    canonical = json.dumps(decisive, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def conversation(prompt: Prompt) -> list[ChatMessage]:
    if isinstance(prompt, str):
        return [ChatMessage("user", prompt)]
    return list(prompt)


class ResponseSampler:
    """Samples ``per_prompt`` responses for records that have none logged yet."""

    def __init__(
        self,
        run_dir: Path,
        engine: Engine,
        sampling: ResponseSampling,
        *,
        key: str,
        seed: int,
        records_per_batch: int,
    ) -> None:
        self.log = AppendLog(run_dir / RESPONSES_FILE)
        self.engine = engine
        self.sampling = sampling
        self.key = key
        self.seed = seed
        self.records_per_batch = max(1, records_per_batch)
        self.sampled = 0  # responses sampled by this call (not found in the log)

    def responses(
        self,
        records: Sequence[Record],
        report: ProgressFn,
        cancelled: threading.Event | None = None,
    ) -> dict[tuple[str, int], SampledResponse]:
        """``(record id, index) → response`` for every record, sampling only what is missing."""
        per_prompt = self.sampling.per_prompt
        found = self._logged()
        missing = [r for r in records if any((r.id, k) not in found for k in range(per_prompt))]
        step = Step("responses", len(missing), report)
        for start in range(0, len(missing), self.records_per_batch):
            if cancelled is not None and cancelled.is_set():
                raise Cancelled("stopped while sampling responses")
            batch = missing[start : start + self.records_per_batch]
            new = self._sample(batch, batch_number=start // self.records_per_batch)
            self.log.append([self._line(response) for response in new])
            found.update({(r.record_id, r.index): r for r in new})
            self.sampled += len(new)
            step.advance(len(batch))
        return found

    def _logged(self) -> dict[tuple[str, int], SampledResponse]:
        found = {}
        for line in self.log.read():
            if line.get("sampling") != self.key:
                continue
            response = SampledResponse(
                str(line["record_id"]),
                int(line["index"]),
                str(line["response"]),
                str(line.get("finish_reason", "")),
                int(line.get("completion_tokens", 0)),
            )
            found[(response.record_id, response.index)] = response
        return found

    def _sample(self, batch: Sequence[Record], batch_number: int) -> list[SampledResponse]:
        per_prompt = self.sampling.per_prompt
        conversations = [conversation(r.prompt) for r in batch for _ in range(per_prompt)]
        params = SamplingParams(
            max_new_tokens=self.sampling.max_new_tokens,
            temperature=self.sampling.temperature,
            top_p=self.sampling.top_p,
            seed=self.seed + batch_number,
        )
        generations = self.engine.generate(conversations, params)
        return [
            SampledResponse(
                batch[i // per_prompt].id,
                i % per_prompt,
                g.text,
                g.finish_reason,
                g.completion_tokens,
            )
            for i, g in enumerate(generations)
        ]

    def _line(self, response: SampledResponse) -> dict[str, object]:
        return {
            "record_id": response.record_id,
            "index": response.index,
            "response": response.text,
            "finish_reason": response.finish_reason,
            "completion_tokens": response.completion_tokens,
            "sampling": self.key,
        }
