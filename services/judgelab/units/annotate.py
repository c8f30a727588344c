"""The Annotate unit: responses for the judge splits, gold labels for each, one file per split.

1. Load and split the data (``units.data``).
2. judge_train + judge_eval records without responses get ``data.responses.per_prompt`` of
   them from ``data.responses.model`` (default: the policy's starting model), appended to
   ``RUN/annotate/responses.jsonl`` batch by batch: a rerun samples only what is missing.
3. Every (prompt, response, reference) goes to the gold judge: the gold annotator service when
   ``gold_address`` is given (its durable cache makes a rerun free), else the ``annotator``
   object given, else the gold judge built in this process (no cache).
4. When a judge wants gold rubrics (``rubric_source: gold``), the gold model writes one per
   prompt of every split, once (``units.rubrics``: ``RUN/annotate/rubrics.jsonl``, resumable),
   and every split row carries its prompt's ``rubric`` as it carries its ``reference``.
5. ``RUN/annotate/{judge_train,judge_eval,policy_train,policy_eval}.jsonl`` and
   ``summary.json`` are written atomically, last.

A study without proxy judges (dpo-self-judge) needs no gold labels here: steps 2 and 3 are
skipped and every split, judge splits included, is written as plain records (splits only).

Invalid gold outputs (and empty sampled responses, which the gold judge never sees) are kept
with ``valid: false`` and counted.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from judgelab.atomic_files import write_text_atomic
from judgelab.engines.base import Engine
from judgelab.judging import JudgeConfig, PointwiseJudge, Sample
from judgelab.spec.experiment import Experiment
from judgelab.spec.model import ModelSpec
from judgelab.units.data import SPLIT_NAMES, LoadOptions, Record, SplitName, Splits, load_splits
from judgelab.units.gold import AnnotatorLike, DirectGold, GoldLabel, GoldLabeller, InProcessGold
from judgelab.units.jsonio import AppendLog, dumps, write_jsonl_atomic
from judgelab.units.progress import ProgressFn, Step, stderr_progress
from judgelab.units.responses import (
    Cancelled,
    ResponseSampler,
    SampledResponse,
    sampling_hash,
)
from judgelab.units.rubrics import (
    RUBRICS_FILE,
    PromptRubric,
    needs_gold_rubrics,
    rubric_fields,
    write_rubrics,
)
from judgelab.units.summary import AnnotateSummary, count_labels

__all__ = ["AnnotateSummary", "Cancelled", "Item", "annotate_dir", "run_annotate"]

ANNOTATE_DIR = "annotate"
SUMMARY_FILE = "summary.json"
EMPTY_RESPONSE = "empty_response"
INVALID_TEXT = "invalid_text"


@dataclass(frozen=True)
class Item:
    """One (prompt, response) of a judge split; ``source``: sampled, response, chosen, rejected."""

    split: SplitName
    record: Record
    index: int
    response: str
    source: str

    @property
    def id(self) -> str:
        return f"{self.record.id}#{self.index}"

    def sample(self) -> Sample:
        return Sample(self.id, self.record.prompt, self.response, self.record.reference)


def annotate_dir(run_dir: Path) -> Path:
    return run_dir / ANNOTATE_DIR


def run_annotate(
    experiment: Experiment,
    run_dir: Path,
    gold_address: str | None = None,
    progress: ProgressFn | None = None,
    *,
    annotator: AnnotatorLike | None = None,
    policy_engine: Engine | None = None,
    cancelled: threading.Event | None = None,
    options: LoadOptions | None = None,
    base_dir: Path | None = None,
    rubric_engine: Engine | None = None,
) -> AnnotateSummary:
    """Run the Annotate unit into ``run_dir/annotate/``; see the module doc for the steps.

    ``progress(done, total, note)`` gets every step's progress (default: lines on stderr);
    ``policy_engine`` / ``rubric_engine`` replace the response / gold model built from the spec
    for sampling responses / writing rubrics (tests);
    ``cancelled`` stops the unit between batches (raises Cancelled; a rerun resumes).
    """
    started = time.monotonic()
    report = progress if progress is not None else stderr_progress()
    spec = experiment.spec
    loaded, splits = load_splits(spec.data, spec.gold.scale, options, base_dir)
    if loaded.dropped_rows:
        sys.stderr.write(loaded.dropped_report() + "\n")
    out_dir = annotate_dir(run_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    labelled = needs_gold_labels(experiment)
    items, sampled, reused = (
        _items(experiment, out_dir, splits, report, policy_engine, cancelled)
        if labelled
        else ([], 0, 0)
    )
    rubrics, rubric_counts = (
        write_rubrics(
            experiment,
            AppendLog(out_dir / RUBRICS_FILE),
            [r for name in SPLIT_NAMES for r in getattr(splits, name)],
            report,
            rubric_engine,
            cancelled,
        )
        if needs_gold_rubrics(experiment)
        else (None, None)
    )
    labels = _label(experiment, items, report, gold_address, annotator, cancelled)
    gold = experiment.spec.gold
    labels = {k: v.labelled(gold.label, gold.scale.min, gold.scale.max) for k, v in labels.items()}
    outputs = _write_outputs(out_dir, splits, items, labels, labelled, rubrics)
    valid, reasons, histogram, cached = count_labels(labels.values())
    summary = AnnotateSummary(
        outputs=outputs,
        records={name: len(records) for name, records in splits.items()},
        items={name: sum(1 for i in items if i.split == name) for name in SPLIT_NAMES[:2]},
        responses_sampled=sampled,
        responses_reused=reused,
        gold_cached=cached,
        valid=valid,
        invalid_reasons=dict(reasons),
        histogram=dict(histogram),
        dropped=loaded.dropped,
        dropped_rows=loaded.dropped_rows,
        seconds=time.monotonic() - started,
        gold_stamps=tuple(sorted({lb.stamp.config_hash for lb in labels.values() if lb.stamp})),
        rubrics=None if rubric_counts is None else rubric_counts.to_json(),
    )
    write_text_atomic(out_dir / SUMMARY_FILE, dumps(summary.to_json()) + "\n")
    sys.stderr.write(summary.format() + "\n")
    return summary


def needs_gold_labels(experiment: Experiment) -> bool:
    """Only proxy judges train on the judge splits' gold labels."""
    return bool(experiment.spec.judges)


def _items(
    experiment: Experiment,
    out_dir: Path,
    splits: Splits,
    report: ProgressFn,
    policy_engine: Engine | None,
    cancelled: threading.Event | None,
) -> tuple[list[Item], int, int]:
    """The judge splits' items; (items, responses sampled now, responses read back)."""
    data = experiment.spec.data
    judge_records = [(name, r) for name in SPLIT_NAMES[:2] for r in getattr(splits, name)]
    to_sample = [r for _, r in judge_records if not r.responses]
    sampled: dict[tuple[str, int], SampledResponse] = {}
    new = 0
    if to_sample:
        model = data.responses.model or experiment.spec.policy.model
        engine = policy_engine if policy_engine is not None else _build_engine(model)
        try:
            sampler = ResponseSampler(
                out_dir,
                engine,
                data.responses,
                key=sampling_hash(model, data.responses, experiment.spec.runtime.seed),
                seed=experiment.spec.runtime.seed,
                records_per_batch=model.max_batch_size // data.responses.per_prompt,
            )
            sampled = sampler.responses(to_sample, report, cancelled)
            new = sampler.sampled
        finally:
            if policy_engine is None:
                engine.close()
    sources = _data_sources(experiment)
    items: list[Item] = []
    for split, record in judge_records:
        if record.responses:
            items += [
                Item(split, record, k, text, sources[k]) for k, text in enumerate(record.responses)
            ]
        else:
            per_prompt = data.responses.per_prompt
            texts = [sampled[(record.id, k)].text for k in range(per_prompt)]
            items += [Item(split, record, k, text, "sampled") for k, text in enumerate(texts)]
    return items, new, len(to_sample) * data.responses.per_prompt - new


def _data_sources(experiment: Experiment) -> tuple[str, ...]:
    return ("chosen", "rejected") if experiment.spec.data.fields.has_pairs else ("response",)


def _label(
    experiment: Experiment,
    items: Sequence[Item],
    report: ProgressFn,
    gold_address: str | None,
    annotator: AnnotatorLike | None,
    cancelled: threading.Event | None,
) -> dict[str, GoldLabel]:
    """Gold labels by item id; empty responses are labelled invalid without asking."""
    labels = {
        item.id: GoldLabel.refused(item.id, *problem)
        for item in items
        if (problem := _unjudgeable(item.response)) is not None
    }
    samples = [item.sample() for item in items if item.id not in labels]
    step = Step("gold", len(items), report)
    if labels:
        step.advance(len(labels))
    if not samples:
        return labels
    gold = _gold(experiment, gold_address, annotator)
    try:
        for label in gold.label(samples):
            labels[label.sample_id] = label
            step.advance()
            if cancelled is not None and cancelled.is_set():
                raise Cancelled("stopped while gold-labelling")
    finally:
        gold.close()
    missing = [s.id for s in samples if s.id not in labels]
    if missing:
        raise RuntimeError(
            f"the gold judge returned no label for {len(missing)} item(s), e.g. {missing[:3]}"
        )
    return labels


def _unjudgeable(response: str) -> tuple[str, str] | None:
    """(reason, detail) for a sampled response the gold judge cannot be shown."""
    if not response.strip():
        return EMPTY_RESPONSE, "the sampled response is empty or whitespace only"
    if "\x00" in response:
        return INVALID_TEXT, "the sampled response contains a NUL character"
    return None


def _gold(
    experiment: Experiment, gold_address: str | None, annotator: AnnotatorLike | None
) -> GoldLabeller:
    if gold_address is not None:
        from judgelab.units.gold_grpc import GrpcGold

        return GrpcGold(gold_address, experiment.metadata.name)
    if annotator is not None:
        return InProcessGold(annotator)
    gold = experiment.spec.gold
    return DirectGold(PointwiseJudge(_build_engine(gold.model), JudgeConfig.from_gold_spec(gold)))


def _build_engine(model: ModelSpec) -> Engine:
    from judgelab.engines import build_engine

    return build_engine(model)


def _write_outputs(
    out_dir: Path,
    splits: Splits,
    items: Sequence[Item],
    labels: dict[str, GoldLabel],
    labelled: bool,
    rubrics: dict[str, PromptRubric] | None,
) -> dict[str, Path]:
    outputs: dict[str, Path] = {}
    for name, records in splits.items():
        path = out_dir / f"{name}.jsonl"
        if name in SPLIT_NAMES[:2] and labelled:
            rows = [
                _item_line(i, labels[i.id]) | rubric_fields(i.record.id, rubrics)
                for i in items
                if i.split == name
            ]
        else:
            rows = [_record_line(name, r) | rubric_fields(r.id, rubrics) for r in records]
        write_jsonl_atomic(path, rows)
        outputs[name] = path
    return outputs


def _record_line(split: str, record: Record) -> dict[str, Any]:
    return {
        "id": record.id,
        "row": record.row,
        "split": split,
        "prompt": _prompt_json(record),
        "reference": record.reference,
    }


def _item_line(item: Item, label: GoldLabel) -> dict[str, Any]:
    stamp = label.stamp
    return {
        "id": item.id,
        "record_id": item.record.id,
        "row": item.record.row,
        "split": item.split,
        "prompt": _prompt_json(item.record),
        "response": item.response,
        "response_index": item.index,
        "response_source": item.source,
        "reference": item.record.reference,
        "label": item.record.label,
        "gold_score": label.score,
        "gold_expected": label.expected,
        "gold_argmax": label.argmax,
        "gold_distribution": [[value, p] for value, p in label.distribution],
        "gold_reasoning": label.reasoning,
        "valid": label.valid,
        "invalid_reason": label.invalid_reason,
        "gold_detail": label.detail,
        "gold_stamp": None
        if stamp is None
        else {
            "judge": stamp.judge,
            "template_id": stamp.template_id,
            "template_hash": stamp.template_hash,
            "config_hash": stamp.config_hash,
        },
    }


def _prompt_json(record: Record) -> str | list[dict[str, str]]:
    if isinstance(record.prompt, str):
        return record.prompt
    return [{"role": m.role, "content": m.content} for m in record.prompt]
