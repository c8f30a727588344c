"""gRPC health checks of a judgelab service, over TLS when the service serves TLS.

Health is never authenticated, so no token is sent. The channel comes from the
``JUDGELAB_CLIENT_*`` variables (:meth:`ChannelConfig.from_env`); in a process that also holds
``JUDGELAB_TLS_CERT_FILE`` (the service's own container, the local runtime that passes its
environment to the services it starts) the check uses TLS even when no client variable says so:
a plaintext check of a TLS server could never pass.

As a command (the Kubernetes exec probe when TLS is on; kubelet's native gRPC probe speaks
plaintext only): ``python -m judgelab.client.health 127.0.0.1:50051 --server-name NAME``;
exit 0 when SERVING, 1 with the reason on stderr otherwise.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from judgelab.client.channel import ChannelConfig, access_hint

SERVER_TLS_ENV = "JUDGELAB_TLS_CERT_FILE"


def health_config(address: str, environ: Mapping[str, str] | None = None) -> ChannelConfig:
    """The channel a health check of ``address`` uses: the client variables', without a token,
    with TLS on when this environment serves TLS."""
    env = os.environ if environ is None else environ
    config = replace(ChannelConfig.from_env(address, env), token=None, token_file=None)
    if env.get(SERVER_TLS_ENV) and not config.secure:
        config = replace(config, tls=True)
    return config


def health_status(config: ChannelConfig, timeout_s: float, service: str = "") -> str:
    """The service's health status name (e.g. ``SERVING``); raises grpc.RpcError when none."""
    with config.channel() as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout_s)
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


def describe_failure(error: grpc.RpcError, config: ChannelConfig) -> str:
    code = error.code()
    return f"{code.name}: {error.details()}{access_hint(code, config)}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m judgelab.client.health", description=__doc__)
    parser.add_argument("address", help="host:port of the service")
    parser.add_argument("--service", default="", help="service name to check ('' = overall)")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds (default 5)")
    parser.add_argument("--ca-file", type=Path, help="CA bundle (default JUDGELAB_CLIENT_CA_FILE)")
    parser.add_argument("--server-name", help="name the server certificate must carry")
    args = parser.parse_args(argv)
    config = health_config(args.address)
    if args.ca_file is not None:
        config = replace(config, ca_file=args.ca_file)
    if args.server_name:
        config = replace(config, server_name=args.server_name)
    try:
        status = health_status(config, args.timeout, args.service)
    except grpc.RpcError as error:
        print(f"{args.address}: {describe_failure(error, config)}", file=sys.stderr)
        return 1
    print(f"{args.address}: {status}")
    return 0 if status == "SERVING" else 1


if __name__ == "__main__":
    sys.exit(main())
