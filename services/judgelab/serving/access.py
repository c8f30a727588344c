"""The access interceptor: who is calling (bearer token) and whether they may call now (quotas).

It runs inside the error interceptor, so its refusals are ordinary ``ServiceError`` s
(UNAUTHENTICATED, RESOURCE_EXHAUSTED with a retry hint) counted in the request metrics.
Authentication and the rate limit are decided from the call's metadata alone, before the
request is parsed: a refused request's bytes are never deserialized, whatever they hold.
Health checks pass without a token (kubelet probes carry none); everything else, reflection
included, needs one when auth is on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import grpc

from judgelab.serving.auth import TokenStore, bearer_token
from judgelab.serving.errors import Problem, ServiceError
from judgelab.serving.quota import ClientQuotas

#: Calls under these method prefixes skip auth and quotas.
OPEN_PREFIXES = ("/grpc.health.v1.Health/",)
ANONYMOUS = "anonymous"


class Unauthenticated(ServiceError):
    code = grpc.StatusCode.UNAUTHENTICATED


_NOT_PARSED = object()  # grpc treats a deserializer returning None as a failure


def _discard(_data: bytes) -> object:
    return _NOT_PARSED


class AccessInterceptor(grpc.ServerInterceptor):  # type: ignore[misc]
    def __init__(self, tokens: TokenStore | None, quotas: ClientQuotas) -> None:
        self.tokens = tokens
        self.quotas = quotas
        self.refused_unauthenticated = 0

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        if details.method.startswith(OPEN_PREFIXES):
            return continuation(details)
        try:
            client = self._client(details)
            self.quotas.check_rate(client)
        except ServiceError as refusal:
            return _refusing(continuation(details), refusal)
        handler = continuation(details)
        if handler is None:
            return None
        return _holding_slot(handler, client, self.quotas)

    def _client(self, details: grpc.HandlerCallDetails) -> str:
        if self.tokens is None:
            return ANONYMOUS
        token = bearer_token(details.invocation_metadata)
        if token is None:
            self.refused_unauthenticated += 1
            raise Unauthenticated(
                Problem(
                    "",
                    "MISSING_TOKEN",
                    "send your token as `authorization: Bearer <token>` metadata",
                )
            )
        client = self.tokens.client_for(token)
        if client is None:
            self.refused_unauthenticated += 1
            raise Unauthenticated(Problem("", "INVALID_TOKEN", "the bearer token is not valid"))
        return client


def _refusing(handler: grpc.RpcMethodHandler | None, refusal: ServiceError) -> Any:
    """A handler of the call's own shape that fails with ``refusal`` without parsing input."""

    def fail(_request: Any, _context: grpc.ServicerContext) -> Any:
        raise refusal

    def fail_streaming(_request: Any, _context: grpc.ServicerContext) -> Iterator[Any]:
        raise refusal
        yield  # pragma: no cover - makes this a generator

    serialize = handler.response_serializer if handler is not None else None
    if handler is None or handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(fail, _discard, serialize)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(fail_streaming, _discard, serialize)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(fail, _discard, serialize)
    return grpc.stream_stream_rpc_method_handler(fail_streaming, _discard, serialize)


def _holding_slot(handler: grpc.RpcMethodHandler, client: str, quotas: ClientQuotas) -> Any:
    """The same handler, holding one of the client's concurrency slots while it runs."""
    if quotas.limits.max_concurrent is None:
        return handler
    parse, serialize = handler.request_deserializer, handler.response_serializer

    def unary(behaviour: Callable[..., Any]) -> Callable[..., Any]:
        def run(request: Any, context: grpc.ServicerContext) -> Any:
            quotas.acquire(client)
            try:
                return behaviour(request, context)
            finally:
                quotas.release(client)

        return run

    def streaming(behaviour: Callable[..., Iterator[Any]]) -> Callable[..., Iterator[Any]]:
        def run(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            quotas.acquire(client)
            try:
                yield from behaviour(request, context)
            finally:
                quotas.release(client)

        return run

    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(unary(handler.unary_unary), parse, serialize)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(
            streaming(handler.unary_stream), parse, serialize
        )
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(unary(handler.stream_unary), parse, serialize)
    assert handler.stream_stream is not None
    return grpc.stream_stream_rpc_method_handler(streaming(handler.stream_stream), parse, serialize)
