"""`ReleaseManager` that shells out to the `helm` binary (Helm 3)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping, Sequence
from typing import Any

from judgelab_operator.releases import ReleaseError, ReleaseInfo

# Helm's errors that say "try again" rather than "this will never work".
TRANSIENT_MARKERS = (
    "another operation",
    "connection refused",
    "connection reset",
    "context deadline exceeded",
    "etcdserver",
    "i/o timeout",
    "is in progress",
    "server is currently unable",
    "service unavailable",
    "timed out",
    "timeout",
    "tls handshake",
    "too many requests",
    "unexpected eof",
)
NOT_FOUND_MARKERS = ("release: not found",)


class HelmCli:
    """Runs `helm install|upgrade|uninstall|status` against the operator's cluster.

    `base_values` are values files given before the operator's own values (which win): the
    cluster set-up of every experiment (images, Redis, vLLM) that the platform chart mounts.
    """

    def __init__(
        self,
        chart: str,
        helm: str = "helm",
        timeout_s: float = 300.0,
        extra_args: Sequence[str] = (),
        base_values: Sequence[str] = (),
    ) -> None:
        self.chart = chart
        self.helm = helm
        self.timeout_s = timeout_s
        self.extra_args = tuple(extra_args)
        self.base_values = tuple(base_values)

    def install(self, name: str, namespace: str, values: Mapping[str, Any]) -> ReleaseInfo:
        """`helm install` with the values on stdin (JSON is YAML)."""
        out = self._run(
            ["install", name, self.chart, "-n", namespace, *self._values(), "-o", "json"],
            json.dumps(values),
        )
        return _info(out, name, namespace)

    def upgrade(self, name: str, namespace: str, values: Mapping[str, Any]) -> ReleaseInfo:
        """`helm upgrade` (chart defaults + these values; nothing reused from before)."""
        out = self._run(
            ["upgrade", name, self.chart, "-n", namespace, *self._values(), "-o", "json"],
            json.dumps(values),
        )
        return _info(out, name, namespace)

    def uninstall(self, name: str, namespace: str) -> None:
        """`helm uninstall`; a missing release is fine."""
        try:
            self._run(["uninstall", name, "-n", namespace])
        except ReleaseError as exc:
            if not _not_found(str(exc)):
                raise

    def status(self, name: str, namespace: str) -> ReleaseInfo | None:
        """`helm status -o json`, None when there is no such release."""
        try:
            out = self._run(["status", name, "-n", namespace, "-o", "json"])
        except ReleaseError as exc:
            if _not_found(str(exc)):
                return None
            raise
        return _info(out, name, namespace)

    def _values(self) -> list[str]:
        files = [arg for path in self.base_values for arg in ("-f", path)]
        return [*files, "-f", "-"]

    def _run(self, args: list[str], stdin: str | None = None) -> str:
        command = [self.helm, *args, *self.extra_args]
        try:
            done = subprocess.run(
                command,
                input=stdin,
                capture_output=True,
                text=True,
                timeout=self.timeout_s,
                check=False,
            )
        except FileNotFoundError as exc:
            raise ReleaseError(f"no helm binary at {self.helm!r}", transient=False) from exc
        except subprocess.TimeoutExpired as exc:
            raise ReleaseError(
                f"helm {args[0]} timed out after {self.timeout_s:g}s", transient=True
            ) from exc
        if done.returncode != 0:
            message = (done.stderr or done.stdout).strip() or f"exit code {done.returncode}"
            lowered = message.lower()
            transient = any(marker in lowered for marker in TRANSIENT_MARKERS)
            raise ReleaseError(f"helm {args[0]} {args[1]}: {message}", transient)
        return done.stdout


def _not_found(message: str) -> bool:
    lowered = message.lower()
    return any(marker in lowered for marker in NOT_FOUND_MARKERS)


def _info(out: str, name: str, namespace: str) -> ReleaseInfo:
    try:
        data = json.loads(out)
    except json.JSONDecodeError as exc:
        raise ReleaseError(f"helm printed no JSON: {out[:200]!r}", transient=False) from exc
    info = data.get("info") or {}
    return ReleaseInfo(
        name, namespace, str(info.get("status", "unknown")), int(data.get("version", 0))
    )
