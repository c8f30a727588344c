"""How often a failed unit (or a failed release operation) is tried again, and when."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential back-off with a budget of attempts (deterministic: no jitter)."""

    max_attempts: int = 3
    initial_delay_s: float = 10.0
    multiplier: float = 2.0
    max_delay_s: float = 300.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.initial_delay_s < 0 or self.max_delay_s < 0 or self.multiplier < 1:
            raise ValueError("delays must be >= 0 and the multiplier >= 1")

    def allows_retry(self, failures: int) -> bool:
        """Whether another attempt is allowed after `failures` failed ones."""
        return failures < self.max_attempts

    def delay_s(self, failures: int) -> float:
        """Seconds to wait after the `failures`-th failure (1-based) before the next attempt."""
        exponent = max(failures - 1, 0)
        return float(min(self.max_delay_s, self.initial_delay_s * self.multiplier**exponent))
