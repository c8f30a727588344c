"""Where an arm keeps its rounds, and JSON written atomically."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from judgelab.atomic_files import write_dir_atomic, write_text_atomic

SUMMARY = "summary.json"
ADAPTER = "adapter"
MODEL = "model"


def round_dir(arm_dir: Path, round_number: int) -> Path:
    """ARM/round-{r}: the round's weights, pairs and summary (written last: it marks the round
    done)."""
    return arm_dir / f"round-{round_number}"


def weights_dir(directory: Path, lora: bool) -> Path:
    return directory / (ADAPTER if lora else MODEL)


def write_json(path: Path, value: Any) -> Path:
    write_text_atomic(path, json.dumps(value, indent=2, allow_nan=False) + "\n")
    return path


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def save_weights(model: Any, tokenizer: Any, target: Path, lora: bool) -> Path:
    """The adapter (LoRA) or the whole model with its tokenizer, written atomically."""

    def fill(staging: Path) -> None:
        model.save_pretrained(str(staging))
        if not lora:
            tokenizer.save_pretrained(str(staging))

    return write_dir_atomic(target, fill)
