"""Pieces every spec module shares: DNS-safe names and cross-field rule errors.

Cross-field rules raise :class:`SpecRuleError`, a ``ValueError`` that carries one
:class:`Issue` per problem with the path of the offending field *relative to the
model that checks it*. The loader joins that path to pydantic's location of the
model, so every problem is reported against the field a person has to edit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_LABEL_RULE = (
    "must be a DNS-1123 label: lowercase letters, digits and '-', "
    "starting and ending with a letter or digit"
)

PathPart = str | int
FieldPath = tuple[PathPart, ...]


@dataclass(frozen=True)
class Issue:
    """One broken rule: where (relative field path), the bad value, and what is allowed."""

    path: FieldPath
    value: object
    message: str


class SpecRuleError(ValueError):
    """A cross-field rule failed; carries every problem found in one model."""

    def __init__(self, issues: Sequence[Issue]) -> None:
        self.issues = tuple(issues)
        super().__init__("; ".join(f"{format_path(i.path)}: {i.message}" for i in self.issues))


def raise_issues(issues: Sequence[Issue]) -> None:
    """Raise a :class:`SpecRuleError` if any rule failed."""
    if issues:
        raise SpecRuleError(issues)


def format_path(path: Sequence[PathPart]) -> str:
    """``("spec", "judges", 1, "scale")`` -> ``spec.judges[1].scale``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out
