"""Gold evaluation in the loop: a pluggable evaluator and the hacking detector over its curve.

The loop calls an :class:`Evaluator` every N steps; it returns at least ``proxy_reward`` and
``gold_reward`` (normalised to [0, 1]). Under FSDP the other ranks call its :class:`Answering`
side meanwhile. :class:`HackingTracker` flags the first evaluation where
the proxy reward is still rising while gold has fallen more than ``margin`` below its best.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable


class Evaluator(Protocol):
    def __call__(self, step: int, policy: Any) -> dict[str, Any]: ...


@runtime_checkable
class Answering(Protocol):
    """The generation half of an evaluation, which ranks > 0 run along with rank 0 under FSDP
    (every forward is a collective there); nothing is scored."""

    def answers(self, policy: Any) -> list[str]: ...


@dataclass
class HackingTracker:
    margin: float
    best_gold: float | None = None
    best_gold_step: int | None = None
    last_proxy: float | None = None
    detected_at: int | None = None

    def update(self, step: int, proxy: float, gold: float) -> dict[str, Any]:
        """Record one evaluation; the fields to add to it (gap, flags, best-gold step)."""
        is_best = self.best_gold is None or gold > self.best_gold
        if is_best:
            self.best_gold, self.best_gold_step = gold, step
        assert self.best_gold is not None
        gap = self.best_gold - gold
        rising = self.last_proxy is not None and proxy > self.last_proxy
        if self.detected_at is None and rising and gap > self.margin:
            self.detected_at = step
        self.last_proxy = proxy
        return {
            "hacking_gap": gap,
            "hacking_detected": int(self.detected_at is not None),
            "hacking_detected_at": self.detected_at,
            "best_gold_step": self.best_gold_step,
            "is_best_gold": is_best,
        }

    def state(self) -> dict[str, Any]:
        return {
            "best_gold": self.best_gold,
            "best_gold_step": self.best_gold_step,
            "last_proxy": self.last_proxy,
            "detected_at": self.detected_at,
        }

    def load(self, state: dict[str, Any]) -> None:
        self.best_gold = state.get("best_gold")
        self.best_gold_step = state.get("best_gold_step")
        self.last_proxy = state.get("last_proxy")
        self.detected_at = state.get("detected_at")
