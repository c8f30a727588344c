"""The prompts an arm trains and is evaluated on, with their reference answers."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from judgelab.engines.base import ChatMessage, Role
from judgelab.judging.samples import Prompt
from judgelab.spec.experiment import Experiment

#: Most missing ids an error message lists before it says "... and N more".
LISTED_IDS = 20


@dataclass(frozen=True)
class PromptRow:
    """One prompt; ``reference`` is None when the data has no reference answer for it."""

    id: str
    prompt: Prompt
    reference: str | None = None

    def conversation(self) -> list[ChatMessage]:
        """The chat the policy answers."""
        if isinstance(self.prompt, str):
            return [ChatMessage("user", self.prompt)]
        return list(self.prompt)


class MissingReferences(ValueError):
    """An arm that needs reference answers got prompts without one."""

    def __init__(self, missing: Sequence[str], total: int, arm: str) -> None:
        self.missing = list(missing)
        listed = ", ".join(self.missing[:LISTED_IDS])
        more = len(self.missing) - LISTED_IDS
        tail = f" ... and {more} more" if more > 0 else ""
        super().__init__(
            f"arm {arm!r} needs a reference answer for every prompt, but {len(self.missing)} "
            f"of {total} prompts have none: {listed}{tail}; fill the data's reference column "
            "(data.fields.reference) or use an arm without references (reference-free)"
        )


def require_references(rows: Sequence[PromptRow], arm: str) -> None:
    """Raise :class:`MissingReferences` naming every prompt without a (non-blank) reference."""
    missing = [row.id for row in rows if row.reference is None or not row.reference.strip()]
    if missing:
        raise MissingReferences(missing, len(rows), arm)


def read_prompt_rows(path: Path) -> list[PromptRow]:
    """Rows of Annotate's ``policy_train.jsonl`` or ``policy_eval.jsonl``."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the Annotate unit writes it")
    lines = path.read_text(encoding="utf-8").splitlines()
    return [row_of(json.loads(line)) for line in lines if line.strip()]


def row_of(raw: dict[str, Any]) -> PromptRow:
    reference = raw.get("reference")
    return PromptRow(
        str(raw["id"]), prompt_of(raw["prompt"]), reference if isinstance(reference, str) else None
    )


def prompt_of(raw: Any) -> Prompt:
    if isinstance(raw, str):
        return raw
    return [ChatMessage(cast(Role, turn["role"]), turn["content"]) for turn in raw]


def load_policy_rows(
    run_dir: Path, experiment: Experiment, base_dir: Path | None = None
) -> tuple[list[PromptRow], list[PromptRow]]:
    """(train, held-out eval) prompts: Annotate's ``policy_train``/``policy_eval`` files when
    it ran, else the same splits carved from the data here (a study without proxy judges has
    no Annotate stage). Eval is cut to ``evaluation.heldout_prompts`` when that is set."""
    annotate = run_dir / "annotate"
    train_path, eval_path = annotate / "policy_train.jsonl", annotate / "policy_eval.jsonl"
    if train_path.is_file() and eval_path.is_file():
        train, held_out = read_prompt_rows(train_path), read_prompt_rows(eval_path)
    else:
        from judgelab.units.data import load_splits

        spec = experiment.spec
        _, splits = load_splits(spec.data, spec.gold.scale, base_dir=base_dir)
        train, held_out = (
            [PromptRow(r.id, r.prompt, r.reference) for r in records]
            for records in (splits.policy_train, splits.policy_eval)
        )
    limit = experiment.spec.evaluation.heldout_prompts
    return train, held_out[:limit] if limit is not None else held_out
