"""Versioned prompt templates: text files under ``judging/templates/``, loaded by id.

A template file is a header of ``# key: value`` lines, then named sections::

    # id: pointwise-v1
    # version: 1
    # kind: pointwise            (pointwise | pairwise | fragment | rubric)
    # reasoning: false
    # reference: false
    # purpose: one line for people
    === system ===
    ...
    === user ===
    ... {{prompt}} ... {{response}} ...

Placeholders are ``{{name}}`` from a fixed set. Rendering replaces them in one pass over the
template text only: inserted text is never scanned again, so braces (or even ``{{response}}``)
inside a prompt or response come through verbatim. A line holding nothing but a placeholder
whose value is empty is dropped (an unused rubric leaves no blank line).

A template's ``sha256`` is the hash of the whole file text: an edit under the same id changes
it, and with it every judge config hash that uses the template.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from judgelab.engines.base import ChatMessage
from judgelab.spec.judges import TEMPLATE_ID_PATTERN

PLACEHOLDER = re.compile(r"\{\{([a-z_]+)\}\}")
SECTION = re.compile(r"^=== ([a-z_]+) ===$")
KINDS = ("pointwise", "pairwise", "fragment", "rubric")
KNOWN_PLACEHOLDERS = frozenset(
    {
        "prompt",
        "response",
        "response_a",
        "response_b",
        "reference",
        "scale_min",
        "scale_max",
        "answer_format",
        "rubric",
    }
)
_REQUIRED: dict[str, frozenset[str]] = {
    "pointwise": frozenset({"prompt", "response", "answer_format", "scale_min", "scale_max"}),
    "pairwise": frozenset({"prompt", "response_a", "response_b", "answer_format"}),
    "fragment": frozenset(),
    # The gold judge's request to write one prompt's rubric (``judging.rubrics``).
    "rubric": frozenset({"prompt"}),
}
_CHAT_SECTIONS = ("system", "user")
RUBRIC_TEMPLATE_ID = "rubric-v1"
#: The gold judge's rubric-writing templates, without and with the data set's reference answer.
RUBRIC_WRITER_ID = "rubric-writer-v1"
RUBRIC_WRITER_REF_ID = "rubric-writer-ref-v1"


@dataclass(frozen=True)
class Template:
    """One parsed template file; ``sha256`` is the hash of ``text``, the file verbatim."""

    id: str
    text: str
    sha256: str
    version: int
    kind: str
    reasoning: bool
    reference: bool
    sections: tuple[tuple[str, str], ...]

    @classmethod
    def parse(cls, text: str, expected_id: str | None = None) -> Template:
        header, sections = _split(text)
        template_id = _field(header, "id", "<file>")
        if expected_id is not None and template_id != expected_id:
            raise ValueError(f"template file {expected_id!r} declares id {template_id!r}")
        template = cls(
            id=template_id,
            text=text,
            sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
            version=_int_field(header, "version", template_id),
            kind=_field(header, "kind", template_id),
            reasoning=_bool_field(header, "reasoning", template_id),
            reference=_bool_field(header, "reference", template_id),
            sections=tuple(sections.items()),
        )
        template._validate()
        return template

    @property
    def placeholders(self) -> frozenset[str]:
        return frozenset(m for _, body in self.sections for m in PLACEHOLDER.findall(body))

    def section(self, name: str) -> str:
        for section_name, body in self.sections:
            if section_name == name:
                return body
        raise ValueError(f"template {self.id!r} has no section {name!r}")

    def render_section(self, name: str, values: Mapping[str, str]) -> str:
        lines = []
        for line in self.section(name).split("\n"):
            lone = PLACEHOLDER.fullmatch(line.strip())
            if lone and self._value(lone[1], values) == "":
                continue
            # A function replacement is inserted literally: no escapes, no re-scanning.
            lines.append(PLACEHOLDER.sub(lambda m: self._value(m[1], values), line))
        return "\n".join(lines)

    def render(self, values: Mapping[str, str]) -> list[ChatMessage]:
        """The judge conversation: one system and one user message."""
        return [
            ChatMessage("system", self.render_section("system", values)),
            ChatMessage("user", self.render_section("user", values)),
        ]

    def _value(self, name: str, values: Mapping[str, str]) -> str:
        if name not in values:
            raise ValueError(f"template {self.id!r} needs a value for {{{{{name}}}}}")
        return values[name]

    def _validate(self) -> None:
        if not re.fullmatch(TEMPLATE_ID_PATTERN, self.id):
            raise ValueError(f"template id {self.id!r} must match {TEMPLATE_ID_PATTERN}")
        if self.kind not in KINDS:
            raise ValueError(
                f"template {self.id!r}: kind must be one of {KINDS}, not {self.kind!r}"
            )
        unknown = self.placeholders - KNOWN_PLACEHOLDERS
        if unknown:
            raise ValueError(f"template {self.id!r}: unknown placeholders {sorted(unknown)}")
        required = set(_REQUIRED[self.kind]) | ({"reference"} if self.reference else set())
        missing = required - self.placeholders
        if missing:
            raise ValueError(f"template {self.id!r}: missing placeholders {sorted(missing)}")
        names = [name for name, _ in self.sections]
        if self.kind != "fragment" and [n for n in names if n in _CHAT_SECTIONS] != list(
            _CHAT_SECTIONS
        ):
            raise ValueError(f"template {self.id!r} needs sections 'system' then 'user'")


def load_template(template_id: str, directory: Path | None = None) -> Template:
    """The template ``template_id`` from ``directory`` (default: the built-in templates)."""
    if not re.fullmatch(TEMPLATE_ID_PATTERN, template_id):
        raise ValueError(f"template id {template_id!r} must match {TEMPLATE_ID_PATTERN}")
    if directory is None:
        return _load_builtin(template_id)
    path = directory / f"{template_id}.txt"
    if not path.is_file():
        raise ValueError(f"no template {template_id!r} in {directory}")
    return Template.parse(path.read_text(encoding="utf-8"), expected_id=template_id)


def builtin_template_ids() -> list[str]:
    return sorted(
        entry.name.removesuffix(".txt")
        for entry in _builtin_dir().iterdir()
        if entry.name.endswith(".txt")
    )


def default_template_id(protocol: str, reasoning: bool, reference_guided: bool) -> str:
    """The built-in template for a judge whose spec leaves ``template`` unset."""
    parts = (
        [protocol] + (["reasoning"] if reasoning else []) + (["ref"] if reference_guided else [])
    )
    return "-".join(parts) + "-v1"


@lru_cache(maxsize=64)
def _load_builtin(template_id: str) -> Template:
    entry = _builtin_dir() / f"{template_id}.txt"
    if not entry.is_file():
        known = ", ".join(builtin_template_ids())
        raise ValueError(f"unknown template {template_id!r}; built-in templates: {known}")
    return Template.parse(entry.read_text(encoding="utf-8"), expected_id=template_id)


def _builtin_dir() -> Traversable:
    return resources.files("judgelab.judging") / "templates"


def _split(text: str) -> tuple[dict[str, str], dict[str, str]]:
    header: dict[str, str] = {}
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for number, line in enumerate(text.split("\n"), start=1):
        marker = SECTION.fullmatch(line.rstrip())
        if marker:
            if marker[1] in sections:
                raise ValueError(f"template line {number}: section {marker[1]!r} repeated")
            current = sections[marker[1]] = []
        elif current is not None:
            current.append(line)
        elif line.startswith("#"):
            key, sep, value = line.lstrip("#").partition(":")
            if not sep:
                raise ValueError(f"template line {number}: header lines are '# key: value'")
            header[key.strip()] = value.strip()
        elif line.strip():
            raise ValueError(f"template line {number}: text before the first section")
    return header, {name: "\n".join(body).strip("\n") for name, body in sections.items()}


def _field(header: Mapping[str, str], key: str, where: str) -> str:
    value = header.get(key)
    if not value:
        raise ValueError(f"template {where!r}: header needs '# {key}: ...'")
    return value


def _int_field(header: Mapping[str, str], key: str, where: str) -> int:
    value = _field(header, key, where)
    if not value.isdigit():
        raise ValueError(f"template {where!r}: {key} must be an integer, got {value!r}")
    return int(value)


def _bool_field(header: Mapping[str, str], key: str, where: str) -> bool:
    value = header.get(key, "false")
    if value not in ("true", "false"):
        raise ValueError(f"template {where!r}: {key} must be true or false, got {value!r}")
    return value == "true"
