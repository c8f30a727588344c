"""The one server interceptor that turns exceptions into gRPC statuses.

`ServiceError` → its own code with ErrorDetails (and, with a retry hint, a
``google.rpc.RetryInfo`` detail plus ``retry-after-ms`` and ``grpc-retry-pushback-ms``
trailers); anything else → INTERNAL with a generic
message (the traceback goes to the log, never to the caller). A request protobuf cannot parse
(non-UTF-8 bytes in a string field) → INVALID_ARGUMENT naming the field. Every call is counted
in the service's metrics by method and code. Works for all four RPC shapes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from google.protobuf import duration_pb2
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from judgelab.serving.errors import ServiceError, invalid
from judgelab.serving.metrics import ServiceMetrics
from judgelab.serving.wire import find_invalid_utf8

log = logging.getLogger(__name__)

RETRY_AFTER_KEY = "retry-after-ms"
#: The trailer gRPC's own retry policy (gRFC A6) honours: clients with a retry service
#: config wait this long before the next attempt.
RETRY_PUSHBACK_KEY = "grpc-retry-pushback-ms"


def _retry_info(seconds: float) -> error_details_pb2.RetryInfo:
    """google.rpc.RetryInfo, the standard status detail saying when to retry."""
    delay = duration_pb2.Duration()
    delay.FromNanoseconds(max(0, int(seconds * 1e9)))
    return error_details_pb2.RetryInfo(retry_delay=delay)


def _abort(context: grpc.ServicerContext, error: Exception, method: str) -> None:
    if isinstance(error, ServiceError):
        proto = error.to_status()
        if error.retry_after_s is not None:
            proto.details.add().Pack(_retry_info(error.retry_after_s))
        status = rpc_status.to_status(proto)
        if error.retry_after_s is not None:
            # abort_with_status replaces the trailers, so the hint travels inside the status.
            millis = str(max(0, int(error.retry_after_s * 1000)))
            retry = ((RETRY_AFTER_KEY, millis), (RETRY_PUSHBACK_KEY, millis))
            status = status._replace(trailing_metadata=(*status.trailing_metadata, *retry))
        context.abort_with_status(status)
    log.exception("unhandled error in %s", method)
    context.abort(grpc.StatusCode.INTERNAL, f"internal error in {method}; see the server log")


class _Undecodable:
    """Stands in for a request that did not parse, so the handler can answer INVALID_ARGUMENT."""

    def __init__(self, data: bytes, message_type: Any, error: DecodeError) -> None:
        self.data, self.message_type, self.error = data, message_type, error

    def problem(self) -> ServiceError:
        field = find_invalid_utf8(self.data, self.message_type.DESCRIPTOR)
        if field is not None:
            return invalid(field, "INVALID_UTF8", "is not valid UTF-8 text")
        return invalid("", "UNPARSEABLE", f"the request is not a valid protobuf: {self.error}")


def _tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None
    message_type = getattr(deserializer, "__self__", None)

    def parse(data: bytes) -> Any:
        try:
            return deserializer(data)
        except DecodeError as error:
            if message_type is None:
                raise
            return _Undecodable(data, message_type, error)

    return parse


def _checked(request: Any) -> Any:
    if isinstance(request, _Undecodable):
        raise request.problem()
    return request


def _checked_stream(requests: Iterator[Any]) -> Iterator[Any]:
    for request in requests:
        yield _checked(request)


class _Call:
    """Times one call and records it with the status code it ended with."""

    def __init__(self, metrics: ServiceMetrics | None, method: str) -> None:
        self.metrics, self.method = metrics, method
        self.started = time.perf_counter()

    def done(self, context: grpc.ServicerContext, error: Exception | None = None) -> None:
        if self.metrics is None:
            return
        if isinstance(error, ServiceError):
            code = error.code.name
        elif error is not None:
            code = (_code(context) or grpc.StatusCode.INTERNAL).name
        else:
            code = (_code(context) or grpc.StatusCode.OK).name
        self.metrics.record_request(self.method, code, time.perf_counter() - self.started)


def _wrap_unary(
    behaviour: Callable[..., Any], method: str, metrics: ServiceMetrics | None, streaming_in: bool
) -> Callable[..., Any]:
    def handler(request: Any, context: grpc.ServicerContext) -> Any:
        call = _Call(metrics, method)
        try:
            request = _checked_stream(request) if streaming_in else _checked(request)
            response = behaviour(request, context)
        except Exception as error:  # the point of this interceptor
            call.done(context, error)
            if _already_aborted(context):
                raise
            _abort(context, error, method)
        call.done(context)
        return response

    return handler


def _wrap_streaming(
    behaviour: Callable[..., Iterator[Any]],
    method: str,
    metrics: ServiceMetrics | None,
    streaming_in: bool,
) -> Callable[..., Any]:
    def handler(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        call = _Call(metrics, method)
        try:
            request = _checked_stream(request) if streaming_in else _checked(request)
            yield from behaviour(request, context)
        except Exception as error:
            call.done(context, error)
            if _already_aborted(context):
                raise
            _abort(context, error, method)
        call.done(context)

    return handler


def _code(context: grpc.ServicerContext) -> grpc.StatusCode | None:
    # context.code() is in grpc since 1.38, not in the stubs.
    code: grpc.StatusCode | None = context.code()  # type: ignore[attr-defined]
    return code


def _already_aborted(context: grpc.ServicerContext) -> bool:
    # context.abort() in a servicer sets the code, then raises a plain Exception: keep its code.
    return _code(context) not in (None, grpc.StatusCode.OK)


class ErrorInterceptor(grpc.ServerInterceptor):  # type: ignore[misc]
    def __init__(self, metrics: ServiceMetrics | None = None) -> None:
        self.metrics = metrics

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(details)
        if handler is None:
            return None
        method = details.method.rsplit("/", 1)[-1]
        parse = _tolerant(handler.request_deserializer)
        serialize = handler.response_serializer
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                _wrap_unary(handler.unary_unary, method, self.metrics, False), parse, serialize
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                _wrap_streaming(handler.unary_stream, method, self.metrics, False), parse, serialize
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                _wrap_unary(handler.stream_unary, method, self.metrics, True), parse, serialize
            )
        assert handler.stream_stream is not None
        return grpc.stream_stream_rpc_method_handler(
            _wrap_streaming(handler.stream_stream, method, self.metrics, True), parse, serialize
        )
