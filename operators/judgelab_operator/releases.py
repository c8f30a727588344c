"""Helm releases behind a small interface, so tests can use a fake."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol


class ReleaseError(Exception):
    """A release operation failed; `transient` ones are worth retrying."""

    def __init__(self, message: str, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


@dataclass(frozen=True)
class ReleaseInfo:
    """What Helm says about a release."""

    name: str
    namespace: str
    status: str
    revision: int


class ReleaseManager(Protocol):
    """Install, upgrade, uninstall and look up one release per Experiment (blocking calls)."""

    def install(self, name: str, namespace: str, values: Mapping[str, Any]) -> ReleaseInfo: ...

    def upgrade(self, name: str, namespace: str, values: Mapping[str, Any]) -> ReleaseInfo: ...

    def uninstall(self, name: str, namespace: str) -> None:
        """Remove the release; a release that does not exist is not an error."""

    def status(self, name: str, namespace: str) -> ReleaseInfo | None:
        """The release, or None if there is none."""
