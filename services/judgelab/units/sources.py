"""The raw rows of a data source, in source order: built-in set, local JSONL/Parquet, or hub.

Rows are numbered from 1: JSON Lines rows by their line number (blank lines are skipped but
counted), other formats by position. A JSON Lines line that does not parse is kept as an
:class:`Unreadable` row so the checks can name it with the others.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from judgelab.spec.data import DataSpec
from judgelab.units.errors import DataError

BUILTIN_PACKAGE = "judgelab"


@dataclass(frozen=True)
class Unreadable:
    """A JSON Lines line that is not JSON (or not UTF-8)."""

    reason: str


@dataclass(frozen=True)
class RawRows:
    """Rows as read; ``columns``: every column of a columnar source (None for JSON Lines)."""

    origin: str
    rows: list[tuple[int, Any]]
    columns: tuple[str, ...] | None
    unit: str  # how rows are named in messages: "line" or "row"


def read_source(data: DataSpec, base_dir: Path | None = None) -> RawRows:
    """Every row of the spec's source; DataError when it cannot be read."""
    if data.source == "builtin":
        return _read_builtin(data.builtin_name)
    if data.source == "local":
        return _read_local(data, base_dir)
    return _read_hub(data)


def _read_builtin(name: str) -> RawRows:
    entry = resources.files(BUILTIN_PACKAGE).joinpath("data", f"{name}.jsonl")
    if not entry.is_file():
        raise DataError(f"built-in data set {name!r} is not installed with judgelab")
    return RawRows(f"built-in set {name!r}", _jsonl_rows(entry.read_bytes()), None, "line")


def _read_local(data: DataSpec, base_dir: Path | None) -> RawRows:
    path = Path(data.path or "")
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    if not path.is_file():
        raise DataError(
            f"local data file {str(path)!r} does not exist (working directory: {os.getcwd()})"
        )
    origin = f"local file {str(path)!r}"
    if data.local_format == "parquet":
        return _read_parquet(path, origin)
    return RawRows(origin, _jsonl_rows(path.read_bytes()), None, "line")


def _read_parquet(path: Path, origin: str) -> RawRows:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as error:
        raise DataError(f"{origin} is not a readable Parquet file: {error}") from error
    rows = list(enumerate(table.to_pylist(), start=1))
    return RawRows(origin, rows, tuple(table.column_names), "row")


def _read_hub(data: DataSpec) -> RawRows:
    name = data.name or ""
    where = f"hub dataset {name!r} (split {data.split!r}"
    where += f", revision {data.revision!r})" if data.revision else ")"
    try:
        import datasets
    except ImportError as error:
        raise DataError(f"{where} needs the `datasets` package: pip install datasets") from error
    try:
        loaded = datasets.load_dataset(name, split=data.split, revision=data.revision)
    except Exception as error:  # noqa: BLE001 - every loader failure becomes one clear message
        raise DataError(_hub_failure(where, error)) from error
    if not isinstance(loaded, datasets.Dataset):
        raise DataError(f"{where} did not load as one split")
    rows = list(enumerate(loaded.to_list(), start=1))
    return RawRows(where, rows, tuple(loaded.column_names), "row")


def _hub_failure(where: str, error: Exception) -> str:
    message = f"could not load {where}: {type(error).__name__}: {error}"
    if isinstance(error, ConnectionError | TimeoutError) or _offline():
        offline = " (HF_HUB_OFFLINE is set)" if _offline() else ""
        message += (
            f". Reading from the hub needs network access{offline}; on a machine without it, "
            "download the data elsewhere and use `source: local` with a .jsonl or .parquet file"
        )
    return message


def _offline() -> bool:
    return any(
        os.environ.get(name, "").lower() in ("1", "true", "yes", "on")
        for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    )


def _jsonl_rows(content: bytes) -> list[tuple[int, Any]]:
    rows: list[tuple[int, Any]] = []
    for number, line in enumerate(content.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            rows.append((number, json.loads(line.decode("utf-8"))))
        except UnicodeDecodeError:
            rows.append((number, Unreadable("not valid UTF-8")))
        except json.JSONDecodeError:
            rows.append((number, Unreadable("not valid JSON")))
    return rows
