"""The one server interceptor that turns exceptions into gRPC statuses.

`ServiceError` → its own code with ErrorDetails; anything else → INTERNAL with a generic
message (the traceback goes to the log, never to the caller). Works for all four RPC shapes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from grpc_status import rpc_status

from judgelab.serving.errors import ServiceError

log = logging.getLogger(__name__)

RETRY_AFTER_KEY = "retry-after-ms"


def _abort(context: grpc.ServicerContext, error: Exception, method: str) -> None:
    if isinstance(error, ServiceError):
        status = rpc_status.to_status(error.to_status())
        if error.retry_after_s is not None:
            # abort_with_status replaces the trailers, so the hint travels inside the status.
            retry = ((RETRY_AFTER_KEY, str(int(error.retry_after_s * 1000))),)
            status = status._replace(trailing_metadata=(*status.trailing_metadata, *retry))
        context.abort_with_status(status)
    log.exception("unhandled error in %s", method)
    context.abort(grpc.StatusCode.INTERNAL, f"internal error in {method}; see the server log")


def _wrap_unary(behaviour: Callable[..., Any], method: str) -> Callable[..., Any]:
    def handler(request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return behaviour(request, context)
        except Exception as error:  # the point of this interceptor
            if _already_aborted(context):
                raise
            _abort(context, error, method)

    return handler


def _wrap_streaming(behaviour: Callable[..., Iterator[Any]], method: str) -> Callable[..., Any]:
    def handler(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        try:
            yield from behaviour(request, context)
        except Exception as error:
            if _already_aborted(context):
                raise
            _abort(context, error, method)

    return handler


def _already_aborted(context: grpc.ServicerContext) -> bool:
    # context.abort() in a servicer sets the code, then raises a plain Exception: keep its code.
    code = context.code()  # type: ignore[attr-defined]  # in grpc since 1.38, not in the stubs
    return code not in (None, grpc.StatusCode.OK)


class ErrorInterceptor(grpc.ServerInterceptor):  # type: ignore[misc]
    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(details)
        if handler is None:
            return None
        method = details.method
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                _wrap_unary(handler.unary_unary, method),
                handler.request_deserializer, handler.response_serializer)
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                _wrap_streaming(handler.unary_stream, method),
                handler.request_deserializer, handler.response_serializer)
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                _wrap_unary(handler.stream_unary, method),
                handler.request_deserializer, handler.response_serializer)
        assert handler.stream_stream is not None
        return grpc.stream_stream_rpc_method_handler(
            _wrap_streaming(handler.stream_stream, method),
            handler.request_deserializer, handler.response_serializer)
