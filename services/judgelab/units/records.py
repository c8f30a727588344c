"""Raw rows → :class:`Record` values through the spec's field mapping, with every problem of
every row collected (not only the first) so one error can name them all."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from judgelab.engines.base import ChatMessage, Role
from judgelab.judging.samples import Prompt
from judgelab.spec.data import FieldMapping
from judgelab.spec.judges import ScoreScale
from judgelab.units.sources import RawRows, Unreadable

ID_COLUMN = "id"
ROLES: frozenset[str] = frozenset({"system", "user", "assistant"})


@dataclass(frozen=True)
class Record:
    """One usable row: its prompt, optional reference, ready-made responses and label."""

    id: str
    row: int
    prompt: Prompt
    reference: str | None = None
    responses: tuple[str, ...] = ()  # the `response` column, or `chosen` then `rejected`
    label: float | None = None


@dataclass(frozen=True)
class Columns:
    """The columns read from each row: mapped field name → column name."""

    prompt: str
    texts: tuple[tuple[str, str], ...]  # optional text fields: (field, column)
    label: str | None

    @classmethod
    def of(cls, fields: FieldMapping, label: str | None) -> Columns:
        texts = [
            (name, column)
            for name, column in (
                ("response", fields.response),
                ("chosen", fields.chosen),
                ("rejected", fields.rejected),
                ("reference", fields.reference),
            )
            if column is not None
        ]
        return cls(fields.prompt, tuple(texts), label)

    @property
    def required(self) -> list[str]:
        label = [self.label] if self.label is not None else []
        return [self.prompt, *(column for _, column in self.texts), *label]


class RowChecker:
    """Turns rows into records, noting ``(reason, row)`` for each problem found."""

    def __init__(self, columns: Columns, scale: ScoreScale) -> None:
        self.columns = columns
        self.scale = scale
        self.problems: list[tuple[str, int]] = []
        self._ids: dict[str, int] = {}

    def record(self, number: int, value: Any) -> Record | None:
        """The row as a record, or None when it has a problem (noted)."""
        before = len(self.problems)
        if isinstance(value, Unreadable):
            self._note(value.reason, number)
            return None
        if not isinstance(value, Mapping):
            self._note("not a JSON object", number)
            return None
        row = cast("Mapping[str, Any]", value)
        prompt = self._prompt(number, row.get(self.columns.prompt), self.columns.prompt)
        texts = {
            name: self._text(number, row.get(column), column) for name, column in self.columns.texts
        }
        label = self._label(number, row)
        record_id = self._id(number, row)
        if len(self.problems) > before or prompt is None or record_id is None:
            return None
        responses = tuple(
            text for name in ("response", "chosen", "rejected") if (text := texts.get(name))
        )
        return Record(record_id, number, prompt, texts.get("reference"), responses, label)

    def _note(self, reason: str, number: int) -> None:
        self.problems.append((reason, number))

    def _text(self, number: int, value: Any, column: str) -> str | None:
        if value is None:
            self._note(f"no {column!r}", number)
            return None
        if not isinstance(value, str):
            self._note(f"{column!r} not text ({type(value).__name__})", number)
            return None
        if not value.strip():
            self._note(f"empty or whitespace-only {column!r}", number)
            return None
        if "\x00" in value:
            self._note(f"NUL character in {column!r}", number)
            return None
        return value

    def _prompt(self, number: int, value: Any, column: str) -> Prompt | None:
        if not isinstance(value, list):
            return self._text(number, value, column)
        turns: list[ChatMessage] = []
        for turn in value:
            if not (isinstance(turn, Mapping) and turn.get("role") in ROLES):
                self._note(
                    f"chat {column!r} not a list of {{role: system|user|assistant, content}} turns",
                    number,
                )
                return None
            content = turn.get("content")
            if not isinstance(content, str) or not content.strip() or "\x00" in content:
                self._note(f"chat {column!r} with an empty or non-text turn", number)
                return None
            turns.append(ChatMessage(cast("Role", turn["role"]), content))
        if not turns or turns[-1].role != "user":
            self._note(f"chat {column!r} not ending with a user turn", number)
            return None
        return tuple(turns)

    def _label(self, number: int, row: Mapping[str, Any]) -> float | None:
        column = self.columns.label
        if column is None:
            return None
        value = row.get(column)
        if value is None:
            self._note(f"no {column!r}", number)
            return None
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            self._note(f"{column!r} not a number", number)
            return None
        if not self.scale.min <= value <= self.scale.max:
            self._note(
                f"{column!r} outside the gold scale {self.scale.min}-{self.scale.max}", number
            )
            return None
        return float(value)

    def _id(self, number: int, row: Mapping[str, Any]) -> str | None:
        value = row.get(ID_COLUMN)
        if value is None:
            record_id = f"row-{number}"
        elif isinstance(value, bool) or not isinstance(value, str | int) or not str(value).strip():
            self._note(f"{ID_COLUMN!r} not a non-empty string or integer", number)
            return None
        else:
            record_id = str(value)
        if record_id in self._ids:
            self._note(f"{ID_COLUMN!r} repeats an earlier row's", number)
            return None
        self._ids[record_id] = number
        return record_id


def missing_columns(raw: RawRows, columns: Columns) -> list[str]:
    """Mapped columns no row has: a mapping mistake rather than bad rows."""
    if raw.columns is not None:
        return [c for c in columns.required if c not in raw.columns]
    present: set[str] = set()
    for _, value in raw.rows:
        if isinstance(value, Mapping):
            present.update(k for k in columns.required if value.get(k) is not None)
    return [c for c in columns.required if c not in present] if raw.rows else []
