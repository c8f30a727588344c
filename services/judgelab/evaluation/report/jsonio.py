"""Reading JSON / JSON Lines inputs with errors that point at the file, the line and the field."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from judgelab.evaluation.report.errors import ReportInputError


def read_json(path: Path) -> Any:
    """The parsed document; a syntax error names ``path:line``."""
    text = _read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        message = f"not valid JSON: {err.msg} (column {err.colno})"
        raise ReportInputError(path, message, err.lineno) from None


def read_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    """``(line number, parsed object)`` for each non-blank line."""
    for number, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as err:
            raise ReportInputError(
                path, f"not valid JSON: {err.msg} (column {err.colno})", number
            ) from None


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ReportInputError(path, f"not UTF-8 text ({err.reason})") from None
    except OSError as err:
        raise ReportInputError(path, f"cannot read: {err.strerror}") from None


@dataclass(frozen=True)
class Fields:
    """Typed access to one JSON object; every error names the file, line and field path."""

    data: Mapping[str, Any]
    path: Path
    line: int | None = None
    where: str = ""

    @classmethod
    def of(cls, value: Any, path: Path, line: int | None = None, where: str = "") -> Fields:
        if not isinstance(value, Mapping):
            raise ReportInputError(path, f"{where or 'value'}: expected a JSON object", line)
        return cls(value, path, line, where)

    def fail(self, key: str, message: str) -> ReportInputError:
        return ReportInputError(self.path, f"{self._name(key)}: {message}", self.line)

    def _name(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def child(self, key: str) -> Fields:
        return Fields.of(self.require(key), self.path, self.line, self._name(key))

    def optional_child(self, key: str) -> Fields | None:
        return None if self.data.get(key) is None else self.child(key)

    def require(self, key: str) -> Any:
        if key not in self.data:
            raise self.fail(key, "missing (required)")
        return self.data[key]

    def integer(self, key: str, minimum: int | None = 0) -> int:
        value = self.require(key)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, f"expected an integer, got {value!r}")
        if minimum is not None and value < minimum:
            raise self.fail(key, f"must be >= {minimum}, got {value}")
        return value

    def number(
        self,
        key: str,
        *,
        required: bool = False,
        low: float | None = None,
        high: float | None = None,
    ) -> float | None:
        """A float, or None for null / NaN / infinity (a gap in the record, not an error)."""
        if required:
            self.require(key)
        value = self.data.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(key, f"expected a number or null, got {value!r}")
        if not math.isfinite(value):
            return None
        if (low is not None and value < low) or (high is not None and value > high):
            raise self.fail(key, f"must be in [{low}, {high}], got {value}")
        return float(value)

    def text(self, key: str, *, required: bool = True) -> str:
        value = self.require(key) if required else self.data.get(key, "")
        if not isinstance(value, str):
            raise self.fail(key, f"expected a string, got {value!r}")
        return value

    def items(self, key: str, *, required: bool = True) -> list[Any]:
        value = self.require(key) if required else self.data.get(key, [])
        if not isinstance(value, list):
            raise self.fail(key, f"expected a list, got {type(value).__name__}")
        return value
