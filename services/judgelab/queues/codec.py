"""The wire form of a stream entry, and a strict reader for its JSON payload.

Every entry has three fields: ``kind`` (which message), ``v`` (schema version) and ``data``
(compact UTF-8 JSON). Anything malformed raises :class:`BadMessage` naming the field, so a
consumer can dead-letter the entry with that reason instead of crashing on it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from typing import Any, NoReturn, TypeVar

SCHEMA_VERSION = 1

#: Stream entry fields as written (str) or as read back from Redis (bytes).
Fields = dict[bytes | str, bytes | str]
FieldsIn = Mapping[bytes, bytes] | Mapping[str, str] | Mapping[bytes | str, bytes | str]

T = TypeVar("T")


class BadMessage(ValueError):
    """A stream entry that is not a valid message; the text names the offending field."""


def encode(kind: str, data: Mapping[str, Any]) -> Fields:
    try:
        text = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except ValueError as exc:
        raise ValueError(f"{kind} message is not JSON-able: {exc}") from exc
    return {"kind": kind, "v": str(SCHEMA_VERSION), "data": text}


def decode(kind: str, fields: FieldsIn) -> Reader:
    """The ``data`` object of an entry that must be a ``kind`` message of this schema version."""
    if not isinstance(fields, Mapping):
        raise BadMessage(f"{kind} message: fields must be a mapping, got {type(fields).__name__}")
    got_kind = _text_field(kind, fields, "kind")
    if got_kind != kind:
        raise BadMessage(f"{kind} message: field 'kind' is {got_kind!r}, expected {kind!r}")
    version = _text_field(kind, fields, "v")
    if version != str(SCHEMA_VERSION):
        raise BadMessage(
            f"{kind} message: field 'v' is {version!r}; this build reads version {SCHEMA_VERSION}"
        )
    try:
        data = json.loads(_text_field(kind, fields, "data"), parse_constant=_reject_constant)
    except ValueError as exc:
        raise BadMessage(f"{kind} message: field 'data' is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadMessage(f"{kind} message: field 'data' must be a JSON object")
    return Reader(kind, "data", data)


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not allowed")


def _text_field(kind: str, fields: FieldsIn, name: str) -> str:
    raw: object = None
    for key in (name, name.encode()):
        if key in fields:
            raw = fields[key]  # type: ignore[index]
            break
    if raw is None:
        raise BadMessage(f"{kind} message: field {name!r} is missing")
    if isinstance(raw, bytes):
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise BadMessage(f"{kind} message: field {name!r} is not UTF-8") from None
    if isinstance(raw, str):
        return raw
    raise BadMessage(f"{kind} message: field {name!r} must be bytes or str")


class Reader:
    """Typed access to a JSON object; failures name the path, e.g. ``data.rollouts[2].id``."""

    def __init__(self, kind: str, path: str, obj: dict[str, Any]) -> None:
        self.kind = kind
        self.path = path
        self.obj = obj

    def fail(self, key: str, reason: str) -> BadMessage:
        return BadMessage(f"{self.kind} message: field '{self.path}.{key}' {reason}")

    def _get(self, key: str) -> Any:
        if key not in self.obj:
            raise self.fail(key, "is missing")
        return self.obj[key]

    def text(self, key: str, *, nonempty: bool = False) -> str:
        value = self._get(key)
        if not isinstance(value, str):
            raise self.fail(key, f"must be a string, got {_json_type(value)}")
        if nonempty and not value.strip():
            raise self.fail(key, "must not be empty")
        return value

    def opt_text(self, key: str) -> str | None:
        return None if self.obj.get(key) is None else self.text(key)

    def integer(self, key: str, *, minimum: int | None = None) -> int:
        value = self._get(key)
        if not _is_int(value):
            raise self.fail(key, f"must be an integer, got {_json_type(value)}")
        if minimum is not None and value < minimum:
            raise self.fail(key, f"must be >= {minimum}, got {value}")
        return int(value)

    def array(self, key: str, item: Callable[[Any], T], what: str) -> list[T]:
        """A JSON array whose items ``item`` converts; ``item`` raises TypeError on a bad one."""
        value = self._get(key)
        if not isinstance(value, list):
            raise self.fail(key, f"must be a list, got {_json_type(value)}")
        out: list[T] = []
        for i, element in enumerate(value):
            try:
                out.append(item(element))
            except TypeError:
                raise self.fail(
                    f"{key}[{i}]", f"must be {what}, got {_json_type(element)}"
                ) from None
        return out

    def objects(self, key: str) -> list[Reader]:
        value = self._get(key)
        if not isinstance(value, list):
            raise self.fail(key, f"must be a list, got {_json_type(value)}")
        readers = []
        for i, element in enumerate(value):
            if not isinstance(element, dict):
                raise self.fail(f"{key}[{i}]", f"must be an object, got {_json_type(element)}")
            readers.append(Reader(self.kind, f"{self.path}.{key}[{i}]", element))
        return readers


def as_int(value: Any) -> int:
    if not _is_int(value):
        raise TypeError
    return int(value)


def as_float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise TypeError
    return float(value)


def as_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError
    return value


def as_str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError
    return value


def as_object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "list" if isinstance(value, list) else "object"
