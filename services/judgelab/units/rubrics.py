"""Gold-written rubrics, one per prompt, for the judges whose spec says ``rubric_source: gold``.

The Annotate unit asks the gold model (``judging.rubrics`` builds the request and cleans the
reply) for one rubric per prompt of every split, once. Each batch's rubrics are appended to
``RUN/annotate/rubrics.jsonl`` and fsynced before anything uses them (a torn last line is cut
on the next read), so a rerun writes only the prompts that have none yet. Lines carry the hash
of what wrote them (gold model, sampling, templates); a changed gold judge rewrites them all.

A rubric the gold judge wrote nothing usable for is kept with ``valid: false`` and its reason,
and its prompt's judges see the fixed generic criteria (``rubric-v1``) instead: the documented
fallback, counted in the Annotate summary (``rubrics.fallback``) and marked on every split row
(``rubric_fallback: true``).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from judgelab.engines.base import Engine, SamplingParams
from judgelab.judging.prompting import RUBRIC_SECTION
from judgelab.judging.rubrics import parse_rubric, writer_conversation, writer_template
from judgelab.judging.templates import RUBRIC_TEMPLATE_ID, load_template
from judgelab.spec.experiment import Experiment
from judgelab.spec.judges import GoldJudgeSpec
from judgelab.units.jsonio import AppendLog
from judgelab.units.progress import ProgressFn, Step
from judgelab.units.records import Record
from judgelab.units.responses import Cancelled

RUBRICS_FILE = "rubrics.jsonl"


@dataclass(frozen=True)
class PromptRubric:
    """One prompt's gold rubric as ``rubrics.jsonl`` keeps it (``rubric`` "" when invalid)."""

    prompt_id: str
    rubric: str
    valid: bool
    problem: str | None
    criteria: int
    template_id: str
    template_hash: str
    writer: str  # hash of what wrote it (:func:`writer_key`)

    def to_json(self) -> dict[str, Any]:
        return {
            "prompt_id": self.prompt_id,
            "rubric": self.rubric,
            "valid": self.valid,
            "problem": self.problem,
            "criteria": self.criteria,
            "template_id": self.template_id,
            "template_hash": self.template_hash,
            "writer": self.writer,
        }

    @classmethod
    def from_json(cls, line: dict[str, Any]) -> PromptRubric:
        return cls(
            str(line["prompt_id"]),
            str(line.get("rubric") or ""),
            bool(line.get("valid")),
            line.get("problem"),
            int(line.get("criteria", 0)),
            str(line.get("template_id", "")),
            str(line.get("template_hash", "")),
            str(line.get("writer", "")),
        )


@dataclass
class RubricCounts:
    """What the rubric step did: written now, read back, and the fallbacks by reason."""

    written: int = 0
    reused: int = 0
    fallback: Counter[str] = field(default_factory=Counter)

    def to_json(self) -> dict[str, Any]:
        return {
            "written": self.written,
            "reused": self.reused,
            "fallback": sum(self.fallback.values()),
            "fallback_reasons": dict(self.fallback),
        }


def needs_gold_rubrics(experiment: Experiment) -> bool:
    """Whether any proxy judge is shown the gold judge's per-prompt rubric."""
    return any(j.rubric and j.rubric_source == "gold" for j in experiment.spec.judges)


def writer_key(gold: GoldJudgeSpec, seed: int) -> str:
    """What decides the rubrics, hashed: the gold model, its sampling and both templates."""
    decisive = {
        "model": gold.model.name,
        "engine": gold.model.engine,
        "dtype": gold.model.dtype,
        "extra_body": gold.model.extra_body,
        "temperature": gold.temperature,
        "reasoning_effort": gold.reasoning_effort,
        "max_tokens": gold.max_tokens,
        "seed": seed,
        "templates": [writer_template(False).sha256, writer_template(True).sha256],
    }
    canonical = json.dumps(decisive, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def fallback_text() -> str:
    """What a judge sees for a prompt whose gold rubric is unusable: the fixed criteria."""
    return load_template(RUBRIC_TEMPLATE_ID).section(RUBRIC_SECTION)


def judge_rubric(rubric: PromptRubric) -> tuple[str, bool]:
    """(the rubric text judges see for the prompt, whether it is the fallback)."""
    return (rubric.rubric, False) if rubric.valid else (fallback_text(), True)


class RubricWriter:
    """Writes the rubrics of the prompts that have none logged under ``key`` yet."""

    def __init__(
        self,
        log: AppendLog,
        engine: Engine,
        gold: GoldJudgeSpec,
        *,
        key: str,
        seed: int,
        batch_size: int,
    ) -> None:
        self.log = log
        self.engine = engine
        self.params = SamplingParams(
            max_new_tokens=gold.max_tokens,
            temperature=gold.temperature,
            seed=seed,
            reasoning_effort=gold.reasoning_effort,
        )
        self.key = key
        self.batch_size = max(1, batch_size)
        self.counts = RubricCounts()

    def rubrics(
        self,
        records: Sequence[Record],
        report: ProgressFn,
        cancelled: threading.Event | None = None,
    ) -> dict[str, PromptRubric]:
        """Prompt id → rubric for every record (first record of an id wins)."""
        unique = list({r.id: r for r in reversed(records)}.values())[::-1]
        found = {
            rubric.prompt_id: rubric
            for line in self.log.read()
            if line.get("writer") == self.key
            for rubric in [PromptRubric.from_json(line)]
        }
        missing = [r for r in unique if r.id not in found]
        self.counts.reused = len(unique) - len(missing)
        step = Step("rubrics", len(unique), report)
        step.advance(self.counts.reused)
        for start in range(0, len(missing), self.batch_size):
            if cancelled is not None and cancelled.is_set():
                raise Cancelled("stopped while writing rubrics")
            batch = self._write(missing[start : start + self.batch_size])
            self.log.append([rubric.to_json() for rubric in batch])
            found.update({rubric.prompt_id: rubric for rubric in batch})
            self.counts.written += len(batch)
            step.advance(len(batch))
        for record in unique:
            if not found[record.id].valid:
                self.counts.fallback[found[record.id].problem or "invalid"] += 1
        return found

    def _write(self, batch: Sequence[Record]) -> list[PromptRubric]:
        requests = [writer_conversation(r.prompt, r.reference) for r in batch]
        generations = self.engine.generate([conv for _, conv in requests], self.params)
        rubrics = []
        for record, (template, _), generation in zip(batch, requests, generations, strict=True):
            written = parse_rubric(generation.text, generation.finish_reason)
            rubrics.append(
                PromptRubric(
                    prompt_id=record.id,
                    rubric=written.text,
                    valid=written.valid,
                    problem=written.problem,
                    criteria=written.criteria,
                    template_id=template.id,
                    template_hash=template.sha256,
                    writer=self.key,
                )
            )
        return rubrics


def write_rubrics(
    experiment: Experiment,
    log: AppendLog,
    records: Sequence[Record],
    report: ProgressFn,
    engine: Engine | None = None,
    cancelled: threading.Event | None = None,
) -> tuple[dict[str, PromptRubric], RubricCounts]:
    """Every record's gold rubric (writing the missing ones with ``engine``, default: the gold
    model built from the spec and closed after) and the counts."""
    gold = experiment.spec.gold
    seed = experiment.spec.runtime.seed
    writer_engine = engine if engine is not None else _build_engine(experiment)
    try:
        writer = RubricWriter(
            log,
            writer_engine,
            gold,
            key=writer_key(gold, seed),
            seed=seed,
            batch_size=gold.model.max_batch_size,
        )
        return writer.rubrics(records, report, cancelled), writer.counts
    finally:
        if engine is None:
            writer_engine.close()


def rubric_fields(prompt_id: str, rubrics: dict[str, PromptRubric] | None) -> dict[str, Any]:
    """The split-row fields of a prompt's rubric ({} when no judge uses gold rubrics)."""
    if rubrics is None:
        return {}
    text, fallback = judge_rubric(rubrics[prompt_id])
    return {"rubric": text, "rubric_fallback": fallback}


def _build_engine(experiment: Experiment) -> Engine:
    from judgelab.engines import build_engine

    return build_engine(experiment.spec.gold.model)
