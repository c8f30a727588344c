"""One computation per attention-mask object, per thread.

Every layer of one forward pass is handed the same mask object, so what an attention function
derives from the mask (a row-group plan, a check of its shape) is computed once per pass. The
mask is held, so its identity cannot be reused by a new mask while it is remembered. Per
thread: engines in different threads (a judge pool's judges) run concurrently.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar, cast

import torch

T = TypeVar("T")


class MaskMemo(threading.local, Generic[T]):
    def __init__(self, compute: Callable[[torch.Tensor], T]) -> None:
        self.compute = compute
        self.mask: torch.Tensor | None = None
        self.value: T | None = None

    def of(self, mask: torch.Tensor) -> T:
        if mask is not self.mask:
            self.mask, self.value = mask, self.compute(mask)
        return cast(T, self.value)
