"""Build, start and stop a judgelab gRPC server the same way for every service.

Each server gets: the error interceptor, gRPC health checking (per service and overall),
reflection (so `grpcurl` works without the protos), message size limits, and a graceful
stop that flips health to NOT_SERVING first, then lets in-flight calls finish. Its
:class:`~judgelab.serving.security.SecurityOptions` add TLS / mutual TLS, bearer-token auth
and per-client quotas (all off by default).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from judgelab.serving.interceptor import ErrorInterceptor
from judgelab.serving.metrics import ServiceMetrics
from judgelab.serving.security import SecurityOptions, process_security

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 64 * 2**20


@dataclass
class ServiceBinding:
    """One servicer and how to add it: e.g. (servicer, add_JudgePoolServicer_to_server, name)."""

    servicer: Any
    add_to_server: Callable[[Any, grpc.Server], None]
    full_name: str  # e.g. "judgelab.v1.JudgePool", from the pb2 DESCRIPTOR


@dataclass
class GrpcServer:
    bindings: Sequence[ServiceBinding]
    host: str = "127.0.0.1"
    port: int = 0  # 0: the OS picks a free port; read it from .port after start()
    max_workers: int = 16
    interceptors: Sequence[grpc.ServerInterceptor] = ()
    metrics: ServiceMetrics | None = None  # requests counted by method and code
    # TLS, tokens, quotas, request size; None: the process's (set by the service's main).
    security: SecurityOptions | None = None
    _server: grpc.Server | None = field(default=None, init=False, repr=False)
    _health: health.HealthServicer | None = field(default=None, init=False, repr=False)

    def start(self) -> GrpcServer:
        security = self.security if self.security is not None else process_security()
        access = security.interceptor()
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=self.max_workers),
            interceptors=[
                ErrorInterceptor(self.metrics),
                *([access] if access else []),
                *self.interceptors,
            ],
            options=[
                ("grpc.max_receive_message_length", security.max_request_bytes),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ],
        )
        self._health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        for binding in self.bindings:
            binding.add_to_server(binding.servicer, server)
        names = [b.full_name for b in self.bindings]
        reflection.enable_server_reflection(
            [*names, health.SERVICE_NAME, reflection.SERVICE_NAME], server
        )
        credentials = security.credentials()
        wanted = f"{self.host}:{self.port}"
        if credentials is None:
            self.port = server.add_insecure_port(wanted)
        else:
            self.port = server.add_secure_port(wanted, credentials)
        if self.port == 0:
            raise OSError(f"could not bind {wanted}")
        server.start()
        self._server = server
        self._set_health(health_pb2.HealthCheckResponse.SERVING)
        log.info(
            "gRPC serving %s on %s:%d (%s)",
            ", ".join(names),
            self.host,
            self.port,
            security.describe(),
        )
        return self

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def stop(self, grace_s: float = 10.0) -> None:
        """NOT_SERVING first (load balancers stop sending), then finish in-flight calls."""
        if self._server is None:
            return
        self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        self._server.stop(grace_s).wait()
        self._server = None

    def wait(self) -> None:
        if self._server is not None:
            self._server.wait_for_termination()

    def _set_health(self, status: int) -> None:
        assert self._health is not None
        self._health.set("", status)
        for binding in self.bindings:
            self._health.set(binding.full_name, status)
