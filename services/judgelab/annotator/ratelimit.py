"""A thread-safe token bucket for calls to a rate-limited gold model (hosted APIs).

Tokens refill at ``per_minute / 60`` per second up to ``burst``. ``acquire(n)`` reserves its
tokens at once, letting the bucket go into debt, then sleeps until the debt is repaid: callers
are served first come first served, and a batch larger than the bucket still goes through
(it waits for as many tokens as it needs). A caller whose wait would end after its deadline
reserves nothing and gets DeadlineExceeded immediately.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from judgelab.serving.errors import DeadlineExceeded, Problem


class RateLimiter:
    """``per_minute`` None: unlimited. ``burst`` None: one second's worth of tokens (>= 1)."""

    def __init__(
        self,
        per_minute: int | None,
        burst: int | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if per_minute is not None and per_minute < 1:
            raise ValueError(f"per_minute must be >= 1 or None, got {per_minute}")
        if burst is not None and burst < 1:
            raise ValueError(f"burst must be >= 1 or None, got {burst}")
        self.per_minute = per_minute
        self.burst = float(burst if burst is not None else max(1, (per_minute or 0) // 60))
        self._rate = per_minute / 60.0 if per_minute is not None else 0.0
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = self.burst
        self._updated = clock()

    @property
    def unlimited(self) -> bool:
        return self.per_minute is None

    def acquire(self, n: int = 1, deadline: float | None = None) -> float:
        """Take ``n`` tokens; returns the seconds waited. ``deadline``: a ``clock()`` value."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        if self.unlimited or n == 0:
            return 0.0
        wait = self._reserve(n, deadline)
        if wait > 0:
            self._sleep(wait)
        return wait

    def _reserve(self, n: int, deadline: float | None) -> float:
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._updated) * self._rate)
            self._updated = now
            wait = max(0.0, (n - self._tokens) / self._rate)
            if deadline is not None and now + wait > deadline:
                raise DeadlineExceeded(
                    Problem(
                        "",
                        "RATE_LIMITED",
                        f"the gold model's rate limit ({self.per_minute}/min) frees {n} "
                        f"request(s) in {wait:.1f} s, after the deadline",
                    )
                )
            self._tokens -= n
            return wait
