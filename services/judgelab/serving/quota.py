"""Per-client request rate limits (token buckets) and concurrency quotas.

Each client (the name its bearer token maps to; ``anonymous`` without auth) gets its own
bucket of ``burst`` requests refilled at ``rate_per_s``, and at most ``max_concurrent`` calls
in flight. A refused call raises :class:`ResourceExhausted` with ``retry_after_s``: for the
rate limit, the time until the bucket holds a token again; for the concurrency quota, a short
fixed pause (when a slot frees up is not known in advance).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from judgelab.serving.errors import Problem, ResourceExhausted

#: Suggested pause after a concurrency refusal.
CONCURRENCY_RETRY_S = 0.1


@dataclass(frozen=True)
class QuotaLimits:
    """Limits applied to each client separately; None switches a limit off."""

    rate_per_s: float | None = None
    burst: int | None = None  # default: max(1, rate_per_s), one second's worth
    max_concurrent: int | None = None

    def __post_init__(self) -> None:
        if self.rate_per_s is not None and self.rate_per_s <= 0:
            raise ValueError(f"rate_per_s must be > 0, got {self.rate_per_s}")
        if self.burst is not None and self.burst < 1:
            raise ValueError(f"burst must be >= 1, got {self.burst}")
        if self.max_concurrent is not None and self.max_concurrent < 1:
            raise ValueError(f"max_concurrent must be >= 1, got {self.max_concurrent}")

    @property
    def enabled(self) -> bool:
        return self.rate_per_s is not None or self.max_concurrent is not None

    @property
    def bucket_size(self) -> float:
        if self.burst is not None:
            return float(self.burst)
        return max(1.0, self.rate_per_s or 1.0)


class _Bucket:
    def __init__(self, size: float, now: float) -> None:
        self.tokens = size
        self.updated = now


class ClientQuotas:
    """Thread-safe admission control for all clients of one server."""

    def __init__(self, limits: QuotaLimits, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, _Bucket] = {}
        self._in_flight: dict[str, int] = {}
        self.refused = {"rate": 0, "concurrency": 0}

    def check_rate(self, client: str) -> None:
        """Take one token from the client's bucket or raise ResourceExhausted."""
        rate = self.limits.rate_per_s
        if rate is None:
            return
        size = self.limits.bucket_size
        with self._lock:
            now = self._clock()
            bucket = self._buckets.setdefault(client, _Bucket(size, now))
            bucket.tokens = min(size, bucket.tokens + (now - bucket.updated) * rate)
            bucket.updated = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return
            self.refused["rate"] += 1
            wait = (1.0 - bucket.tokens) / rate
        raise ResourceExhausted(
            Problem(
                "",
                "RATE_LIMITED",
                f"client {client!r} is over its rate limit of {rate:g} requests/s; "
                f"retry in {wait * 1000:.0f} ms",
            ),
            retry_after_s=wait,
        )

    def acquire(self, client: str) -> None:
        """Take a concurrency slot (give it back with :meth:`release`) or raise."""
        limit = self.limits.max_concurrent
        if limit is None:
            return
        with self._lock:
            running = self._in_flight.get(client, 0)
            if running < limit:
                self._in_flight[client] = running + 1
                return
            self.refused["concurrency"] += 1
        raise ResourceExhausted(
            Problem(
                "",
                "TOO_MANY_CONCURRENT_CALLS",
                f"client {client!r} already has {limit} calls in flight (its quota); "
                "retry when one finishes",
            ),
            retry_after_s=CONCURRENCY_RETRY_S,
        )

    def release(self, client: str) -> None:
        if self.limits.max_concurrent is None:
            return
        with self._lock:
            self._in_flight[client] = max(0, self._in_flight.get(client, 0) - 1)

    def in_flight(self, client: str) -> int:
        with self._lock:
            return self._in_flight.get(client, 0)
