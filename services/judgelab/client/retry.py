"""Retries with full-jitter exponential back-off, for idempotent calls only.

Only UNAVAILABLE (server restarting, connection lost) and RESOURCE_EXHAUSTED (queue full,
quota) are retried: both mean "not done, try later". A server's retry hint (RetryInfo or the
``grpc-retry-pushback-ms`` trailer) is a lower bound on the pause. The call's deadline covers
every attempt: no retry starts that could not finish in time.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import grpc

from judgelab.client.errors import ApiError

T = TypeVar("T")
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED})


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    initial_backoff_s: float = 0.1
    max_backoff_s: float = 5.0
    multiplier: float = 2.0
    retry_codes: frozenset[grpc.StatusCode] = field(default=RETRYABLE)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")

    def pause_s(
        self, attempt: int, hint_s: float | None, rng: random.Random | None = None
    ) -> float:
        """Pause after failed attempt ``attempt`` (0-based): jittered, at least the hint."""
        ceiling = min(self.max_backoff_s, self.initial_backoff_s * self.multiplier**attempt)
        return max(hint_s or 0.0, (rng or random).uniform(0.0, ceiling))


NO_RETRY = RetryPolicy(max_attempts=1)


@dataclass
class Attempts:
    """Bookkeeping shared by the sync and async loops."""

    policy: RetryPolicy
    idempotent: bool
    timeout_s: float | None
    clock: Callable[[], float] = time.monotonic
    count: int = 0
    deadline: float | None = None

    def __post_init__(self) -> None:
        if self.timeout_s is not None:
            self.deadline = self.clock() + self.timeout_s

    def remaining_s(self) -> float | None:
        return None if self.deadline is None else max(0.0, self.deadline - self.clock())

    def failed(self, error: grpc.RpcError) -> tuple[ApiError, float | None]:
        """The error to raise, and the pause before the next attempt (None: give up)."""
        self.count += 1
        api_error = ApiError.from_rpc_error(error, self.count)
        if (
            not self.idempotent
            or api_error.code not in self.policy.retry_codes
            or self.count >= self.policy.max_attempts
        ):
            return api_error, None
        pause = self.policy.pause_s(self.count - 1, api_error.retry_after_s)
        left = self.remaining_s()
        if left is not None and pause >= left:
            return api_error, None
        return api_error, pause


def call_with_retries(
    call: Callable[[float | None], T],
    policy: RetryPolicy,
    *,
    idempotent: bool,
    timeout_s: float | None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """``call(remaining_timeout)`` until it succeeds or the policy gives up (ApiError)."""
    attempts = Attempts(policy, idempotent, timeout_s)
    while True:
        try:
            return call(attempts.remaining_s())
        except grpc.RpcError as error:
            api_error, pause = attempts.failed(error)
        if pause is None:
            raise api_error
        sleep(pause)


async def acall_with_retries(
    call: Callable[[float | None], Awaitable[T]],
    policy: RetryPolicy,
    *,
    idempotent: bool,
    timeout_s: float | None,
) -> T:
    attempts = Attempts(policy, idempotent, timeout_s)
    while True:
        try:
            return await call(attempts.remaining_s())
        except grpc.RpcError as error:
            api_error, pause = attempts.failed(error)
        if pause is None:
            raise api_error
        await asyncio.sleep(pause)
