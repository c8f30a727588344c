"""Mixed precision (``ModelSpec.mixed_precision``) for the compute-bound passes.

``bf16``: weights stay in their dtype (float32 on CPU) and the matrix products of prefill,
scoring and training forward/backward run in bfloat16 under ``torch.autocast``. On a CPU with
AVX512-BF16 or AMX that halves their time (measured on the 2-core dev machine with the built-in
model: an 8 x 380-token prefill 5.2 s -> 2.9 s, a LoRA training step 14.9 s -> 7.4 s; the last
hidden state moves by 0.7% relative). Token-by-token decoding is memory-bound and gets slower
under autocast (a batch-16 step: 120 ms -> 170-210 ms), so the engine decodes in the weights'
dtype whatever this says. Log-probs are always taken in float32.

Where the CPU has no native bfloat16 the option falls back to float32 with a warning: emulated
bfloat16 is slower than float32, and this is a speed option, not a numerics one.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Literal

import torch

log = logging.getLogger(__name__)

MixedPrecision = Literal["no", "bf16"]


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` runs bfloat16 matrix products natively."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        return bool(torch.backends.mkldnn.is_available() and _cpu_bf16())
    return False


def resolve(requested: str, device: torch.device) -> MixedPrecision:
    """What ``requested`` means on ``device``: ``bf16`` only where bfloat16 is native."""
    if requested == "no":
        return "no"
    if requested != "bf16":
        raise ValueError(f"mixed_precision must be 'no' or 'bf16', got {requested!r}")
    if native_bf16(device):
        return "bf16"
    log.warning(
        "mixed_precision bf16 requested but %s has no native bfloat16 matrix products: "
        "running in float32 (emulated bfloat16 would be slower)",
        device,
    )
    return "no"


@contextlib.contextmanager
def autocast(mode: MixedPrecision, device: torch.device) -> Iterator[None]:
    """bfloat16 autocast on ``device`` when ``mode`` is ``bf16``; nothing otherwise."""
    if mode != "bf16":
        yield
        return
    with torch.autocast(device.type, dtype=torch.bfloat16):
        yield


def _cpu_bf16() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False
