"""Samples from a JSONL file, checked line by line before anything is sent.

One JSON object per line: ``{"id": "q1", "prompt": "..." or [{"role": "user", "content":
"..."}], "response": "...", "reference": "..." (optional), "metadata": {...} (optional)}``.
Without an id a sample is called ``line-N``. Blank lines are skipped.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from judgelab.client.types import Message, Sample

ROLES = ("system", "user", "assistant")
MAX_SHOWN = 20


class BadInput(Exception):
    """Lines that are not valid samples; ``problems`` holds one ``FILE:LINE: why`` each."""

    def __init__(self, problems: list[str], total: int) -> None:
        self.problems = problems
        more = f"\n... and {total - len(problems)} more" if total > len(problems) else ""
        super().__init__("\n".join(problems) + more)


def read_samples(path: Path) -> list[Sample]:
    """Every sample of ``path``; raises BadInput listing the bad lines (first 20)."""
    samples: list[Sample] = []
    problems: list[str] = []
    count = 0
    seen: dict[str, int] = {}
    for number, line in _lines(path):
        try:
            sample = sample_from_json(line, number)
            if sample.id in seen:
                raise ValueError(f"id {sample.id!r} is also the id on line {seen[sample.id]}")
            seen[sample.id] = number
            samples.append(sample)
        except ValueError as error:
            count += 1
            if len(problems) < MAX_SHOWN:
                problems.append(f"{path}:{number}: {error}")
    if count:
        raise BadInput(problems, count)
    if not samples:
        raise BadInput([f"{path}: no samples (the file is empty)"], 1)
    return samples


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    try:
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    yield number, line
    except UnicodeDecodeError as error:
        raise BadInput([f"{path}: not UTF-8 text ({error.reason})"], 1) from None
    except OSError as error:
        raise BadInput([f"{path}: {error.strerror or error}"], 1) from None


def sample_from_json(line: str, number: int) -> Sample:
    try:
        data = json.loads(line)
    except json.JSONDecodeError as error:
        raise ValueError(f"not JSON ({error.msg} at column {error.colno})") from None
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    sample_id = data.get("id", f"line-{number}")
    if not isinstance(sample_id, str | int) or isinstance(sample_id, bool) or sample_id == "":
        raise ValueError("'id' must be a non-empty string or an integer")
    return Sample(
        id=str(sample_id),
        prompt=_prompt(data.get("prompt")),
        response=_text(data, "response"),
        reference=_text(data, "reference") if data.get("reference") is not None else None,
        metadata=_metadata(data.get("metadata")),
    )


def _text(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    if value is None:
        raise ValueError(f"'{key}' is missing")
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"'{key}' must be a non-empty string")
    return value


def _prompt(value: Any) -> str | list[Message]:
    if value is None:
        raise ValueError("'prompt' is missing")
    if isinstance(value, str) and value.strip():
        return value
    if not isinstance(value, list) or not value:
        raise ValueError("'prompt' must be a non-empty string or a list of {role, content}")
    turns = []
    for i, turn in enumerate(value):
        if not isinstance(turn, dict) or turn.get("role") not in ROLES:
            raise ValueError(f"'prompt[{i}]' needs a role of {', '.join(ROLES)}")
        if not isinstance(turn.get("content"), str):
            raise ValueError(f"'prompt[{i}].content' must be a string")
        turns.append(Message(turn["role"], turn["content"]))
    return turns


def _metadata(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ValueError("'metadata' must be an object of strings")
    return {str(k): v for k, v in value.items()}
