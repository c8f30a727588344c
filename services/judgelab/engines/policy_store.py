"""Policy versions: published by the learner, read by the rollout generator.

Layout: ``ROOT/v{N}/`` holds version N (a peft LoRA adapter or full weights, plus the manifest
``judgelab-policy.json``); a Redis key (``StreamNames.policy_version(arm)``) holds the latest N.
Publishing writes a temporary directory beside the others, fsyncs it, renames it into place and
only then raises the key (never lowers it), so a reader that sees N in Redis finds a complete
``v{N}``. Version 0 is the base model and has no directory.

This module imports only the shared core (no other rollout module), so it can move into it
unchanged if the learner needs it (services must not import each other).
"""

from __future__ import annotations

import copy
import json
import logging
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

from judgelab.atomic_files import write_dir_atomic
from judgelab.engines.lora_merge import merged_copy

if TYPE_CHECKING:
    import redis

log = logging.getLogger(__name__)

MANIFEST = "judgelab-policy.json"
WeightsKind = Literal["lora", "full"]
_VERSION_DIR = re.compile(r"^v(\d+)$")
# SET the key to ARGV[1] unless it already holds a larger (or equal) version.
_RAISE_VERSION = """
local current = tonumber(redis.call('GET', KEYS[1]) or '-1')
if tonumber(ARGV[1]) > current then
  redis.call('SET', KEYS[1], ARGV[1])
  return 1
end
return 0
"""


class PolicyNotFound(LookupError):
    """A version was announced (or asked for) but its directory is missing or incomplete."""


@dataclass(frozen=True)
class PublishedPolicy:
    """One published version; version 0 (``kind`` None, no path) is the base model."""

    version: int
    kind: WeightsKind | None
    path: Path | None
    base_model: str
    step: int
    created_at: float  # Unix seconds

    @classmethod
    def base(cls, base_model: str = "") -> PublishedPolicy:
        return cls(0, None, None, base_model, 0, 0.0)

    def manifest(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("path")
        return data


def policy_root(run_dir: str | Path, experiment: str, arm: str) -> Path:
    """Where one arm's policy versions live: ``RUN_DIR/EXPERIMENT/policy/ARM`` (``run_dir``:
    ``spec.runtime.run_dir``, the folder of all runs)."""
    return run_policy_root(Path(run_dir) / experiment, arm)


def run_policy_root(run: Path, arm: str) -> Path:
    """The same from one run's own directory (``RUN = RUN_DIR/EXPERIMENT``): ``RUN/policy/ARM``."""
    return run / "policy" / arm


def version_dir(root: Path, version: int) -> Path:
    return root / f"v{version}"


def publish_policy_version(
    root: str | Path,
    version: int,
    model: Any,
    *,
    redis: redis.Redis | None = None,
    key: str | None = None,
    step: int | None = None,
    base_model: str = "",
) -> PublishedPolicy:
    """Write ``model`` as version ``version`` under ``root`` atomically, then announce it.

    ``model``: a peft ``PeftModel`` (its adapter is saved) or a transformers model (full
    weights). ``redis``/``key``: the version key to raise to ``version`` (skipped when None).
    A version published again (a learner resumed from a checkpoint) replaces the old directory.
    """
    if version < 1:
        raise ValueError(f"version must be >= 1 (0 is the base model), got {version}")
    if (redis is None) != (key is None):
        raise ValueError("give both redis and key, or neither")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    kind = weights_kind(model)
    info = PublishedPolicy(
        version,
        kind,
        version_dir(root, version),
        base_model,
        version if step is None else step,
        time.time(),
    )

    def fill(staging: Path) -> None:
        model.save_pretrained(str(staging))
        (staging / MANIFEST).write_text(json.dumps(info.manifest(), sort_keys=True), "utf-8")

    write_dir_atomic(version_dir(root, version), fill)
    if redis is not None and key is not None:
        redis.eval(_RAISE_VERSION, 1, key, str(version))
    log.info("published policy v%d (%s) at %s", version, kind, info.path)
    return info


def weights_kind(model: Any) -> WeightsKind:
    from peft import PeftModel

    if isinstance(model, PeftModel):
        return "lora"
    if not hasattr(model, "save_pretrained"):
        raise TypeError(f"cannot publish a {type(model).__name__}: it has no save_pretrained")
    return "full"


class PolicyStore:
    """Reads the versions under ``root``: the latest from Redis (or the directory without one)."""

    def __init__(
        self,
        root: str | Path,
        *,
        redis: redis.Redis | None = None,
        key: str | None = None,
        base_model: str = "",
    ) -> None:
        if (redis is None) != (key is None):
            raise ValueError("give both redis and key, or neither")
        self.root = Path(root)
        self.redis = redis
        self.key = key
        self.base_model = base_model

    def latest_version(self) -> int:
        """The newest announced version (0 when none was published)."""
        if self.redis is not None and self.key is not None:
            raw = self.redis.get(self.key)
            return 0 if raw is None else int(cast(bytes, raw))
        versions = self.versions()
        return versions[-1] if versions else 0

    def versions(self) -> list[int]:
        """Complete versions on disk, ascending."""
        if not self.root.is_dir():
            return []
        found = []
        for entry in self.root.iterdir():
            match = _VERSION_DIR.match(entry.name)
            if match and (entry / MANIFEST).is_file():
                found.append(int(match.group(1)))
        return sorted(found)

    def published(self, version: int) -> PublishedPolicy:
        """The manifest of ``version``; PolicyNotFound if it is not (yet) on disk."""
        if version == 0:
            return PublishedPolicy.base(self.base_model)
        path = version_dir(self.root, version)
        try:
            data = json.loads((path / MANIFEST).read_text("utf-8"))
        except FileNotFoundError:
            raise PolicyNotFound(f"policy v{version} is not in {self.root}") from None
        return PublishedPolicy(
            version=int(data["version"]),
            kind=data["kind"],
            path=path,
            base_model=str(data.get("base_model", "")),
            step=int(data.get("step", version)),
            created_at=float(data.get("created_at", 0.0)),
        )

    def load(self, version: int, base: Any) -> tuple[PublishedPolicy, Any]:
        """``version``'s manifest and a new model with its weights; ``base`` is left untouched.

        LoRA: the adapter is applied to a copy of ``base`` and merged (plain weights, no peft
        overhead when sampling); directly for plain LoRA (``lora_merge``), else through peft.
        Full: the weights are read in ``base``'s dtype.
        """
        info = self.published(version)
        if info.kind is None or info.path is None:
            return info, copy.deepcopy(base)
        if info.kind == "lora":
            merged = merged_copy(base, info.path)
            if merged is not None:
                return info, merged
            from peft import PeftModel

            adapted = PeftModel.from_pretrained(copy.deepcopy(base), str(info.path))
            return info, adapted.merge_and_unload().eval()
        from transformers import AutoModelForCausalLM

        dtype = next(base.parameters()).dtype
        model = AutoModelForCausalLM.from_pretrained(str(info.path), dtype=dtype)
        return info, model.eval()
