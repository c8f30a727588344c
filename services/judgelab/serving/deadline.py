"""The caller's gRPC deadline as a point on this process's monotonic clock."""

from __future__ import annotations

import time

import grpc

#: grpc reports "no deadline" as a huge time_remaining() (about 9.2e18 s), not None.
NO_DEADLINE_S = 1e9


def request_deadline(context: grpc.ServicerContext) -> float | None:
    """``time.monotonic()`` value of the caller's deadline; None when the caller set none."""
    remaining = context.time_remaining()
    if remaining is None or remaining > NO_DEADLINE_S:
        return None
    return time.monotonic() + remaining
