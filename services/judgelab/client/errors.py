"""A failed call as one exception with everything the server said about it."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from judgelab.api.v1 import common_pb2

RETRY_AFTER_KEYS = ("grpc-retry-pushback-ms", "retry-after-ms")


@dataclass(frozen=True)
class ErrorInfo:
    """One problem the server found (field path, stable reason code, message)."""

    field: str
    reason: str
    message: str


class ApiError(Exception):
    """A judgelab call failed: ``code``, the server's message, its details and retry hint."""

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        details: tuple[ErrorInfo, ...] = (),
        retry_after_s: float | None = None,
        attempts: int = 1,
    ) -> None:
        self.code = code
        self.message = message
        self.details = details
        self.retry_after_s = retry_after_s
        self.attempts = attempts
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        super().__init__(f"{code.name}{tries}: {message}")

    @property
    def reasons(self) -> list[str]:
        return [d.reason for d in self.details]

    @classmethod
    def from_rpc_error(cls, error: grpc.RpcError, attempts: int = 1) -> ApiError:
        found = _call_value(error, "code")
        code = found if isinstance(found, grpc.StatusCode) else grpc.StatusCode.UNKNOWN
        text = _call_value(error, "details")
        message = text if isinstance(text, str) and text else code.name
        details, retry = _status_details(error)
        if retry is None:
            retry = _retry_trailer(_call_value(error, "trailing_metadata") or ())
        return cls(code, message, details, retry, attempts)


def _call_value(error: grpc.RpcError, name: str) -> object:
    method = getattr(error, name, None)
    return method() if callable(method) else None


def _status_details(error: grpc.RpcError) -> tuple[tuple[ErrorInfo, ...], float | None]:
    try:
        status = rpc_status.from_call(error)  # type: ignore[arg-type]
    except (ValueError, AttributeError):
        return (), None
    if status is None:
        return (), None
    found: list[ErrorInfo] = []
    retry: float | None = None
    for packed in status.details:
        detail = common_pb2.ErrorDetail()
        info = error_details_pb2.RetryInfo()
        if packed.Unpack(detail):
            found.append(ErrorInfo(detail.field, detail.reason, detail.message))
        elif packed.Unpack(info):
            retry = info.retry_delay.ToNanoseconds() / 1e9
    return tuple(found), retry


def _retry_trailer(trailers: object) -> float | None:
    for key, value in trailers if isinstance(trailers, tuple | list) else ():
        if key in RETRY_AFTER_KEYS:
            try:
                return float(value) / 1000
            except (TypeError, ValueError):
                return None
    return None
