"""``RUN/arms/{arm}/steps.jsonl``: one learner step per line, gold evaluations on some of them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from judgelab.evaluation.report.errors import ReportInputError
from judgelab.evaluation.report.jsonio import Fields, read_jsonl


@dataclass(frozen=True)
class EvalSample:
    """One held-out prompt's policy sample with its gold and proxy scores."""

    prompt: str
    response: str
    gold: float | None
    proxy: float | None

    @classmethod
    def from_json(cls, fields: Fields) -> EvalSample:
        return cls(
            prompt=fields.text("prompt"),
            response=fields.text("response"),
            gold=fields.number("gold"),
            proxy=fields.number("proxy"),
        )


@dataclass(frozen=True)
class EvalRecord:
    """Gold (and proxy) mean reward of the policy's samples on held-out prompts at one step."""

    gold_reward_mean: float | None
    proxy_reward_mean: float | None
    samples: tuple[EvalSample, ...]

    @classmethod
    def from_json(cls, fields: Fields) -> EvalRecord:
        samples = fields.items("samples", required=False)
        return cls(
            gold_reward_mean=fields.number("gold_reward_mean", required=True),
            proxy_reward_mean=fields.number("proxy_reward_mean", required=True),
            samples=tuple(
                EvalSample.from_json(
                    Fields.of(s, fields.path, fields.line, f"{fields.where}.samples[{i}]")
                )
                for i, s in enumerate(samples)
            ),
        )


@dataclass(frozen=True)
class StepRecord:
    """One learner step. Numbers are None where the learner wrote null, NaN or infinity."""

    step: int
    proxy_reward_mean: float | None
    kl: float | None
    proxy_reward_std: float | None = None
    entropy: float | None = None
    completion_length_mean: float | None = None
    clip_fraction: float | None = None
    eval: EvalRecord | None = None

    @classmethod
    def from_json(cls, value: Any, path: Path, line: int) -> StepRecord:
        fields = Fields.of(value, path, line)
        evaluation = fields.optional_child("eval")
        return cls(
            step=fields.integer("step"),
            proxy_reward_mean=fields.number("proxy_reward_mean", required=True),
            kl=fields.number("kl", required=True, low=-1e-6),
            proxy_reward_std=fields.number("proxy_reward_std", low=0.0),
            entropy=fields.number("entropy"),
            completion_length_mean=fields.number("completion_length_mean", low=0.0),
            clip_fraction=fields.number("clip_fraction", low=0.0, high=1.0),
            eval=None if evaluation is None else EvalRecord.from_json(evaluation),
        )


def load_steps(path: Path) -> list[StepRecord]:
    """The file's records sorted by step; a repeated step is an error naming both lines."""
    records: list[StepRecord] = []
    seen: dict[int, int] = {}
    for line, value in read_jsonl(path):
        record = StepRecord.from_json(value, path, line)
        if record.step in seen:
            raise ReportInputError(
                path, f"step {record.step} already recorded on line {seen[record.step]}", line
            )
        seen[record.step] = line
        records.append(record)
    return sorted(records, key=lambda r: r.step)
