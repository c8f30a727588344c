"""Exceptions a servicer or core may raise, and how each becomes a gRPC status.

A `ServiceError` carries the status code and one `ErrorDetail` per problem (field path,
stable reason code, message), packed into `google.rpc.Status.details` so clients can read
them; the message alone is still useful to a human with `grpcurl`.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from google.protobuf import any_pb2
from google.rpc import status_pb2

from judgelab.api.v1 import common_pb2


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a request."""

    field: str
    reason: str  # UPPER_SNAKE_CASE, stable: REQUIRED, OUT_OF_RANGE, UNKNOWN_JUDGE, ...
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


class ServiceError(Exception):
    """An expected failure with the status code the caller should see."""

    code = grpc.StatusCode.INTERNAL

    def __init__(self, *problems: Problem, retry_after_s: float | None = None) -> None:
        if not problems:
            raise ValueError("a ServiceError needs at least one Problem")
        self.problems = problems
        self.retry_after_s = retry_after_s
        super().__init__("; ".join(map(str, problems)))

    def to_status(self) -> status_pb2.Status:
        details = []
        for problem in self.problems:
            packed = any_pb2.Any()
            packed.Pack(common_pb2.ErrorDetail(field=problem.field, reason=problem.reason,
                                               message=problem.message))
            details.append(packed)
        return status_pb2.Status(code=self.code.value[0], message=str(self), details=details)


class InvalidArgument(ServiceError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(ServiceError):
    code = grpc.StatusCode.NOT_FOUND


class FailedPrecondition(ServiceError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class ResourceExhausted(ServiceError):
    """Back-pressure: a bounded queue or a quota is full; retry after `retry_after_s`."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(ServiceError):
    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(ServiceError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


def invalid(field: str, reason: str, message: str) -> InvalidArgument:
    """The common case in one call: `raise invalid("samples[2].response", "REQUIRED", "...")`."""
    return InvalidArgument(Problem(field, reason, message))


def error_details(error: grpc.RpcError) -> list[common_pb2.ErrorDetail]:
    """Client side: the ErrorDetails a judgelab server attached to a failed call."""
    from grpc_status import rpc_status

    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    if status is None:
        return []
    found = []
    for packed in status.details:
        detail = common_pb2.ErrorDetail()
        if packed.Unpack(detail):
            found.append(detail)
    return found
