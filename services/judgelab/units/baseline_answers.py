"""Baseline answers for the Arena-Hard-style win rate (``evaluation.baseline_answers``).

The file is JSON Lines, one object per line (blank lines are skipped)::

    {"id": "r7", "answer": "..."}                     # matched by the held-out prompt's id
    {"prompt": "Name a prime number.", "answer": "..."}  # matched by its exact prompt text
    {"prompt": [{"role": "user", "content": "..."}], "answer": "..."}  # a chat prompt

``answer`` is required and must be non-blank text; at least one of ``id`` / ``prompt`` is
required (both are fine). A held-out prompt takes the answer whose ``id`` equals its id, else the
one whose ``prompt`` equals its text exactly (a chat prompt compared as the judge reads it:
``judging.samples.prompt_text``). Ids and prompt texts must be unique in the file. A held-out
prompt with no answer is an error listing how many and which ids: nothing is skipped silently.

A relative path is relative to the experiment file's directory; ``judgelab run`` stores it
absolute in ``RUN/experiment.yaml`` (:func:`absolute_baseline_path`). A process handed a spec
whose path is still relative (a cluster Job) reads it from its working directory.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from judgelab.engines.base import ChatMessage
from judgelab.judging import Sample
from judgelab.judging.samples import Prompt, prompt_text
from judgelab.spec import Experiment, SpecError
from judgelab.spec.errors import Problem
from judgelab.units.evaluate_outputs import EvalPrompt, EvaluateError
from judgelab.units.evaluate_results import BASELINE_SOURCE, Against, sample_id

#: Problems (bad lines, missing ids) listed in one error before "... and N more".
LISTED = 20
_ROLES = ("system", "user", "assistant")


class BaselineAnswersError(EvaluateError):
    """The baseline answers file is missing, malformed, or lacks an answer for a prompt;
    ``problems``: one line each (``FILE:LINE: what is wrong`` for a bad line)."""

    def __init__(self, message: str, problems: Sequence[str] = ()) -> None:
        self.problems = tuple(problems) or (message,)
        super().__init__(message)


class HeldOutPrompt(Protocol):
    """A held-out prompt as Evaluate (``EvalPrompt``) and dpo-self-judge (``PromptRow``) hold it."""

    @property
    def id(self) -> str: ...

    @property
    def prompt(self) -> Prompt: ...


@dataclass(frozen=True)
class BaselineAnswers:
    """The file's answers, by id and by prompt text."""

    path: Path
    by_id: Mapping[str, str]
    by_prompt: Mapping[str, str]

    @property
    def label(self) -> str:
        """What the report and results call this baseline."""
        return f"baseline answers: {self.path}"

    def answers_for(self, prompts: Sequence[HeldOutPrompt]) -> list[str]:
        """One answer per prompt (by id, else by exact prompt text); raises when any lacks one."""
        found: list[str] = []
        missing: list[str] = []
        for prompt in prompts:
            answer = self.by_id.get(prompt.id)
            if answer is None:
                answer = self.by_prompt.get(prompt_text(prompt.prompt))
            if answer is None:
                missing.append(prompt.id)
            else:
                found.append(answer)
        if missing:
            raise BaselineAnswersError(
                f"{self.path}: no baseline answer for {len(missing)} of {len(prompts)} held-out "
                f"prompts (matched by id, then by exact prompt text): ids {_listed(missing)}"
            )
        return found


def resolve_baseline_path(value: str, base_dir: Path | None = None) -> Path:
    """``value`` as a path: relative ones under ``base_dir`` (default: the working directory)."""
    path = Path(value).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    return path


def absolute_baseline_path(value: str, experiment_path: Path) -> str:
    """The path as the run's experiment copy keeps it: absolute, from the experiment's folder."""
    return str(resolve_baseline_path(value, experiment_path.resolve().parent).resolve())


def check_baseline_file(experiment: Experiment, experiment_path: Path) -> None:
    """Read and check the experiment's baseline answers file, if it names one, as ``judgelab
    validate`` and ``judgelab run`` do before anything runs: :class:`SpecError`, one line per
    problem. Whether every held-out prompt has an answer is known only once the data is split
    (Evaluate checks it before sampling)."""
    value = experiment.spec.evaluation.baseline_answers
    if value is None:
        return
    path = resolve_baseline_path(value, experiment_path.parent)
    try:
        load_baseline_answers(path)
    except BaselineAnswersError as error:
        field = "spec.evaluation.baseline_answers"
        raise SpecError(
            [Problem(str(experiment_path), field, value, line) for line in error.problems]
        ) from None


def load_baseline_answers(path: Path) -> BaselineAnswers:
    """Read and check the whole file; :class:`BaselineAnswersError` names every bad line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise BaselineAnswersError(f"{path}: baseline answers file does not exist") from None
    except IsADirectoryError:
        raise BaselineAnswersError(f"{path}: is a directory, not a baseline answers file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise BaselineAnswersError(f"{path}: cannot read baseline answers: {error}") from None
    by_id: dict[str, str] = {}
    by_prompt: dict[str, str] = {}
    seen: dict[tuple[str, str], int] = {}
    problems: list[str] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            key_id, key_prompt, answer = _parse_line(line)
        except ValueError as error:
            problems.append(f"{path}:{number}: {error}")
            continue
        for kind, key, table in (("id", key_id, by_id), ("prompt", key_prompt, by_prompt)):
            if key is None:
                continue
            if (kind, key) in seen:
                problems.append(
                    f"{path}:{number}: duplicate {kind} {_short(key)} (first on line "
                    f"{seen[(kind, key)]})"
                )
                continue
            seen[(kind, key)] = number
            table[key] = answer
    if problems:
        more = f"\n  ... and {len(problems) - LISTED} more" if len(problems) > LISTED else ""
        listed = "\n  ".join(problems[:LISTED])
        raise BaselineAnswersError(f"{path}: bad baseline answers:\n  {listed}{more}", problems)
    if not by_id and not by_prompt:
        raise BaselineAnswersError(f"{path}: no baseline answers in the file")
    return BaselineAnswers(path, by_id, by_prompt)


def _parse_line(line: str) -> tuple[str | None, str | None, str]:
    """(id, prompt text, answer) of one line; ValueError saying what is wrong."""
    try:
        data = json.loads(line)
    except json.JSONDecodeError as error:
        raise ValueError(f"not JSON: {error}") from None
    if not isinstance(data, dict):
        raise ValueError(f"expected an object with answer and id or prompt, got {_kind(data)}")
    answer = data.get("answer")
    if not isinstance(answer, str):
        raise ValueError(f"answer must be text, got {_kind(answer)}")
    if not answer.strip():
        raise ValueError("answer is empty")
    raw_id, raw_prompt = data.get("id"), data.get("prompt")
    if raw_id is None and raw_prompt is None:
        raise ValueError("needs an id or a prompt to match a held-out prompt by")
    if raw_id is not None and (isinstance(raw_id, bool) or not isinstance(raw_id, str | int)):
        raise ValueError(f"id must be text or an integer, got {_kind(raw_id)}")
    key_id = None if raw_id is None else str(raw_id)
    key_prompt = None if raw_prompt is None else _prompt_key(raw_prompt)
    return key_id, key_prompt, answer


def _prompt_key(raw: Any) -> str:
    if isinstance(raw, str):
        return raw
    if isinstance(raw, list) and raw and all(isinstance(turn, dict) for turn in raw):
        turns = []
        for turn in raw:
            role, content = turn.get("role"), turn.get("content")
            if role not in _ROLES or not isinstance(content, str):
                raise ValueError(
                    f"prompt turns need a role in {_ROLES} and text content, got {_short(turn)}"
                )
            turns.append(ChatMessage(role, content))
        return prompt_text(turns)
    raise ValueError(f"prompt must be text or a non-empty list of chat turns, got {_kind(raw)}")


def _listed(ids: Sequence[str]) -> str:
    more = f" ... and {len(ids) - LISTED} more" if len(ids) > LISTED else ""
    return ", ".join(ids[:LISTED]) + more


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def baseline_against(
    value: str | None, prompts: Sequence[EvalPrompt]
) -> tuple[Against, list[Sample]]:
    """What Evaluate's pairwise outcomes compare with: the initial policy when ``value`` (the
    spec's ``evaluation.baseline_answers``) is unset, else the file's answers to ``prompts`` and
    the gold samples that score them (one per prompt)."""
    if value is None:
        return Against(), []
    answers = load_baseline_answers(resolve_baseline_path(value))
    texts = answers.answers_for(prompts)
    samples = [
        Sample(sample_id(BASELINE_SOURCE, prompt, 0), prompt.prompt, text, prompt.reference)
        for prompt, text in zip(prompts, texts, strict=True)
    ]
    return Against(BASELINE_SOURCE, answers.label, per_prompt=1), samples
