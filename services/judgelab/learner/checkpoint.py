"""Checkpoints written atomically: ``RUN/checkpoints/step-{N}/`` appears whole or not at all.

Files: ``trainer.pt`` (weights, optimiser, version history), ``rng.pt`` (torch, CUDA, Python and
numpy generators), ``extra.json`` (the loop's stream positions and consumed ids). They are
written into a temporary sibling directory, fsynced, and the directory renamed into place.
"""

from __future__ import annotations

import json
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from judgelab.atomic_files import write_dir_atomic, write_text_atomic

CHECKPOINTS = "checkpoints"
_NAME = re.compile(r"^step-(\d+)$")


def checkpoint_root(run_dir: Path) -> Path:
    return run_dir / CHECKPOINTS


def save(run_dir: Path, step: int, state: dict[str, Any], extra: dict[str, Any]) -> Path:
    """Write step ``step``'s checkpoint; an existing one for the same step is replaced."""

    def write(tmp: Path) -> None:
        torch.save(state, tmp / "trainer.pt")
        torch.save(rng_state(), tmp / "rng.pt")
        (tmp / "extra.json").write_text(json.dumps(extra, sort_keys=True))

    return write_dir_atomic(checkpoint_root(run_dir) / f"step-{step}", write)


def load(directory: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(trainer state, extras) of a checkpoint; the RNG states are restored as a side effect."""
    if not (directory / "trainer.pt").is_file():
        raise FileNotFoundError(f"{directory} is not a checkpoint (no trainer.pt)")
    state: dict[str, Any] = torch.load(directory / "trainer.pt", weights_only=False)
    set_rng_state(torch.load(directory / "rng.pt", weights_only=False))
    extra: dict[str, Any] = json.loads((directory / "extra.json").read_text())
    return state, extra


def latest(run_dir: Path) -> Path | None:
    """The checkpoint of the highest step under ``run_dir``, or None."""
    root = checkpoint_root(run_dir)
    if not root.is_dir():
        return None
    steps = [(int(m.group(1)), p) for p in root.iterdir() if (m := _NAME.match(p.name))]
    return max(steps)[1] if steps else None


def prune(run_dir: Path, keep_last: int, keep: frozenset[Path] = frozenset()) -> None:
    """Delete all but the newest ``keep_last`` checkpoints (and those in ``keep``)."""
    root = checkpoint_root(run_dir)
    steps = (
        sorted((int(m.group(1)), p) for p in root.iterdir() if (m := _NAME.match(p.name)))
        if root.is_dir()
        else []
    )
    for _, path in steps[: max(len(steps) - keep_last, 0)]:
        if path not in keep:
            shutil.rmtree(path)


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": np.random.get_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def write_json_atomically(path: Path, data: dict[str, Any]) -> None:
    """Replace ``path`` with ``data`` as JSON (temp file, fsync, rename)."""
    write_text_atomic(path, json.dumps(data, sort_keys=True))
