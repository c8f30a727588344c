"""When to retry an HTTP call to a model server, and how long to wait first.

Pure functions and a small policy object, so the back-off maths is testable
without a server. Retried: transport errors, timeouts, HTTP 429 and 5xx.
Every other 4xx is the caller's mistake and is raised at once.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


def is_retryable_status(status_code: int) -> bool:
    return status_code == 429 or 500 <= status_code <= 599


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date), or None."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


@dataclass
class RetryPolicy:
    """Full-jitter exponential back-off: wait uniform(0, min(max_delay, base * 2**attempt)).

    A server's Retry-After wins over the jittered delay (capped at ``max_retry_after_s``,
    so a misbehaving server cannot park a worker for hours).
    """

    max_retries: int = 5
    base_delay_s: float = 0.5
    max_delay_s: float = 30.0
    max_retry_after_s: float = 300.0
    rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {self.max_retries}")
        if self.base_delay_s < 0 or self.max_delay_s < 0:
            raise ValueError("back-off delays must be >= 0")

    def delay_s(self, attempt: int, retry_after_s: float | None = None) -> float:
        """Seconds to sleep before retry number ``attempt + 1`` (``attempt`` counts from 0)."""
        if retry_after_s is not None:
            return min(retry_after_s, self.max_retry_after_s)
        ceiling = min(self.max_delay_s, self.base_delay_s * (2**attempt))
        return self.rng.uniform(0.0, ceiling)
