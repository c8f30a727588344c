"""Read an Experiment from YAML and turn every kind of failure into a :class:`SpecError`."""

from __future__ import annotations

import difflib
import re
import types
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from judgelab.spec.common import (
    DNS_LABEL_PATTERN,
    DNS_LABEL_RULE,
    PathPart,
    SpecRuleError,
    format_path,
)
from judgelab.spec.errors import Problem, SpecError, render_value
from judgelab.spec.experiment import Experiment
from judgelab.spec.judges import TEMPLATE_ID_PATTERN
from judgelab.spec.resources import CPU_PATTERN, MEMORY_PATTERN
from judgelab.spec.runtime import DEVICE_PATTERN, REDIS_URL_PATTERN

MAX_FILE_BYTES = 1 << 20
TOP_LEVEL_KEYS = "apiVersion, kind, metadata and spec"

PATTERN_RULES = {
    DNS_LABEL_PATTERN: DNS_LABEL_RULE,
    CPU_PATTERN: "must be a CPU quantity such as 500m or 2",
    MEMORY_PATTERN: "must be a memory quantity such as 512Mi or 4Gi",
    REDIS_URL_PATTERN: "must be a redis://, rediss:// or unix:// URL",
    DEVICE_PATTERN: "must be auto, cpu, mps, cuda or cuda:N",
    TEMPLATE_ID_PATTERN: "must be a template id: lowercase letters, digits, '.', '_' and '-'",
}

# YAML 1.1 (PyYAML) reads `1e-6` as a string; YAML 1.2 and JSON read it as a number.
_FLOAT = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)


class _SpecYamlLoader(yaml.SafeLoader):
    """Safe loader that rejects duplicate keys (PyYAML silently keeps the last one)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
            except TypeError:  # unhashable key: let PyYAML report it
                break
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_SpecYamlLoader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))


def load_experiment(path: str | Path) -> Experiment:
    """Read and validate an Experiment file; raises :class:`SpecError` on any problem."""
    source = str(path)
    return validate_text(_read_text(Path(path), source), source)


def validate_text(text: str, source: str = "<string>") -> Experiment:
    """Validate an Experiment given as YAML (or JSON) text."""
    return validate_mapping(_parse_yaml(text, source), source)


def validate_mapping(data: object, source: str = "<object>") -> Experiment:
    """Validate an already-parsed Experiment (e.g. the body the operator is handed)."""
    if data is None:
        raise _fail(source, f"empty — expected an Experiment mapping with {TOP_LEVEL_KEYS}")
    if not isinstance(data, dict):
        raise _fail(
            source,
            f"top level is {_kind_of(data)} — must be a mapping with {TOP_LEVEL_KEYS}",
        )
    try:
        return Experiment.model_validate(data)
    except ValidationError as exc:
        raise SpecError(_problems(exc, source)) from None


def _read_text(path: Path, source: str) -> str:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise _fail(source, "no such file") from None
    except IsADirectoryError:
        raise _fail(source, "is a directory, not an Experiment file") from None
    except OSError as exc:
        raise _fail(source, f"cannot read: {exc.strerror or exc}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise _fail(source, f"{len(raw)} bytes — an Experiment file may be at most 1 MiB")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        byte = raw[exc.start]
        raise _fail(
            source, f"line {line}: byte 0x{byte:02x} — not UTF-8 text; save the file as UTF-8"
        ) from None


def _parse_yaml(text: str, source: str) -> object:
    try:
        return yaml.load(text, Loader=_SpecYamlLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.MarkedYAMLError as exc:
        raise _fail(source, _yaml_error_text(exc)) from None
    except yaml.YAMLError as exc:
        raise _fail(source, f"invalid YAML — {exc}") from None
    except RecursionError:
        raise _fail(source, "invalid YAML — nested too deeply") from None


def _yaml_error_text(exc: yaml.MarkedYAMLError) -> str:
    mark = exc.problem_mark or exc.context_mark
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
    what = ", ".join(part for part in (exc.context, exc.problem) if part) or "cannot parse"
    if what.startswith("duplicate key"):
        return f"{where}{what} — each key may appear once in a mapping"
    return f"{where}invalid YAML — {what}"


def _fail(source: str, message: str) -> SpecError:
    return SpecError([Problem(source, "", None, message)])


def _kind_of(value: object) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    return f"a {type(value).__name__}"


# --- pydantic errors -> problems -------------------------------------------------------------


def _problems(exc: ValidationError, source: str) -> list[Problem]:
    problems: list[Problem] = []
    for error in exc.errors():
        rule = error.get("ctx", {}).get("error")
        base, parent, here = _resolve(error["loc"])
        if isinstance(rule, SpecRuleError):
            for issue in rule.issues:
                path = format_path((*base, *issue.path))
                problems.append(Problem(source, path, render_value(issue.value), issue.message))
        else:
            problems.append(_field_problem(error, base, parent, here, source))
    return problems


def _field_problem(
    error: ErrorDetails, path: list[PathPart], parent: Any, here: Any, source: str
) -> Problem:
    kind = error["type"]
    value: str | None = render_value(error.get("input"))
    ctx = error.get("ctx", {})
    if kind == "missing":
        value, message = "missing", "this field is required"
    elif kind == "extra_forbidden":
        message = _unknown_field_message(path[-1], parent)
    elif kind in ("union_tag_invalid", "union_tag_not_found"):
        path = [*path, str(ctx.get("discriminator", "")).strip("'")]
        tags = ", ".join(repr(tag) for tag in _tagged_members(here))
        if kind == "union_tag_not_found":
            value, message = "missing", f"required: one of {tags}"
        else:
            value, message = render_value(ctx.get("tag")), f"must be one of {tags}"
    elif kind in ("model_type", "model_attributes_type", "dict_type"):
        message = "must be a mapping"
    elif kind == "list_type":
        message = "must be a list"
    elif kind == "string_pattern_mismatch":
        pattern = str(ctx.get("pattern", ""))
        message = PATTERN_RULES.get(pattern, f"must match {pattern}")
    else:
        message = _reword(error["msg"])
    return Problem(source, format_path(path), value, message)


def _reword(msg: str) -> str:
    msg = msg.removeprefix("Value error, ")
    msg = msg.replace("Input should be", "must be").replace("input should be", "must be")
    return msg[:1].lower() + msg[1:]


def _unknown_field_message(name: PathPart, parent: Any) -> str:
    allowed = _field_names(parent)
    if not allowed:
        return "unknown field"
    close = difflib.get_close_matches(str(name), allowed, n=1)
    if close:
        return f"unknown field; did you mean {close[0]!r}?"
    return f"unknown field; allowed: {', '.join(allowed)}"


def _resolve(loc: tuple[int | str, ...]) -> tuple[list[PathPart], Any, Any]:
    """Turn pydantic's location into the user's field path, dropping union tags; also return
    the type at the parent of the last part (to list allowed fields) and the type at it."""
    current: Any = Experiment
    parent: Any = None
    path: list[PathPart] = []
    for part in loc:
        current = _strip_optional(current)
        members = _tagged_members(current)
        if members and part in members:
            current = members[part]
            continue
        parent = current
        path.append(part)
        current = _child_type(current, part)
    return path, parent, current


def _strip_optional(tp: Any) -> Any:
    args = [a for a in _union_args(tp) if a is not type(None)]
    return args[0] if len(args) == 1 else tp


def _union_args(tp: Any) -> tuple[Any, ...]:
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        return typing.get_args(tp)
    return ()


def _tagged_members(tp: Any) -> dict[PathPart, Any]:
    members: dict[PathPart, Any] = {}
    for member in _union_args(tp):
        if isinstance(member, type) and issubclass(member, BaseModel):
            field = member.model_fields.get("name")
            if field is not None and typing.get_origin(field.annotation) is typing.Literal:
                members[typing.get_args(field.annotation)[0]] = member
    return members


def _child_type(tp: Any, part: PathPart) -> Any:
    if isinstance(tp, type) and issubclass(tp, BaseModel) and isinstance(part, str):
        for name, field in tp.model_fields.items():
            if part in (name, field.alias):
                return field.annotation
        return None
    args = typing.get_args(tp)
    if typing.get_origin(tp) is list and isinstance(part, int) and args:
        return args[0]
    if typing.get_origin(tp) is dict and len(args) == 2:
        return args[1]
    return None


def _field_names(tp: Any) -> list[str]:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [field.alias or name for name, field in tp.model_fields.items()]
    members = _tagged_members(tp)
    return sorted({n for m in members.values() for n in _field_names(m)})
