"""How a judgelab gRPC server is secured: TLS / mutual TLS, bearer tokens, quotas, size limit.

One :class:`SecurityOptions` per process, from command-line flags or these environment
variables (file paths may point into mounted Kubernetes Secrets):

==================================== ==========================================================
``JUDGELAB_TLS_CERT_FILE``           server certificate chain (PEM); with the key: TLS on
``JUDGELAB_TLS_KEY_FILE``            server private key (PEM)
``JUDGELAB_TLS_CLIENT_CA_FILE``      CA of client certificates: mutual TLS (client cert required)
``JUDGELAB_API_TOKENS``              tokens file or Secret directory: bearer-token auth on
``JUDGELAB_RATE_LIMIT_PER_S``        requests per second per client (token bucket)
``JUDGELAB_RATE_LIMIT_BURST``        bucket size (default: one second's worth)
``JUDGELAB_MAX_CONCURRENT_PER_CLIENT`` calls in flight per client
``JUDGELAB_MAX_REQUEST_BYTES``       largest request message accepted (default 64 MiB)
==================================== ==========================================================

Everything is off by default (plaintext, no auth): the local runtime on 127.0.0.1 needs none.
Health checks are never authenticated (kubelet probes carry no token).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import grpc

from judgelab.serving.access import AccessInterceptor
from judgelab.serving.auth import TokenStore
from judgelab.serving.quota import ClientQuotas, QuotaLimits
from judgelab.serving.tls import CertificateFiles

DEFAULT_MAX_REQUEST_BYTES = 64 * 2**20
MIN_REQUEST_BYTES = 1024

ENVIRONMENT = {
    "tls_cert": "JUDGELAB_TLS_CERT_FILE",
    "tls_key": "JUDGELAB_TLS_KEY_FILE",
    "tls_client_ca": "JUDGELAB_TLS_CLIENT_CA_FILE",
    "tokens": "JUDGELAB_API_TOKENS",
    "rate_per_s": "JUDGELAB_RATE_LIMIT_PER_S",
    "burst": "JUDGELAB_RATE_LIMIT_BURST",
    "max_concurrent": "JUDGELAB_MAX_CONCURRENT_PER_CLIENT",
    "max_request_bytes": "JUDGELAB_MAX_REQUEST_BYTES",
}
HELP = {
    "tls_cert": "server certificate chain, PEM (with --tls-key: serve TLS)",
    "tls_key": "server private key, PEM",
    "tls_client_ca": "CA bundle of client certificates (mutual TLS: a client cert is required)",
    "tokens": "client name -> bearer token: YAML/JSON file or a mounted Secret directory",
    "rate_per_s": "requests per second allowed per client (token bucket)",
    "burst": "rate-limit bucket size per client (default: one second's worth)",
    "max_concurrent": "calls in flight allowed per client",
    "max_request_bytes": "largest request message accepted, bytes",
}


class SecurityConfigError(ValueError):
    """Inconsistent security settings; the message names the flags / variables."""


@dataclass(frozen=True)
class SecurityOptions:
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    tokens: Path | None = None
    rate_per_s: float | None = None
    burst: int | None = None
    max_concurrent: int | None = None
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES

    def __post_init__(self) -> None:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise SecurityConfigError(
                "TLS needs both a certificate and a key (--tls-cert and --tls-key)"
            )
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise SecurityConfigError(
                "mutual TLS (--tls-client-ca) needs server TLS (--tls-cert, --tls-key)"
            )
        if self.max_request_bytes < MIN_REQUEST_BYTES:
            raise SecurityConfigError(
                f"max request bytes must be >= {MIN_REQUEST_BYTES}, got {self.max_request_bytes}"
            )
        try:
            self.limits()
        except ValueError as error:
            raise SecurityConfigError(str(error)) from None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SecurityOptions:
        env = os.environ if environ is None else environ
        values = {name: env[var] for name, var in ENVIRONMENT.items() if env.get(var)}
        try:
            typed: dict[str, Any] = {name: _typed(name, value) for name, value in values.items()}
            return cls(**typed)
        except ValueError as error:
            if isinstance(error, SecurityConfigError):
                raise
            raise SecurityConfigError(f"security environment: {error}") from None

    def limits(self) -> QuotaLimits:
        return QuotaLimits(self.rate_per_s, self.burst, self.max_concurrent)

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    def credentials(self) -> grpc.ServerCredentials | None:
        """TLS credentials (re-reading renewed files), or None for plaintext."""
        if self.tls_cert is None or self.tls_key is None:
            return None
        return CertificateFiles(self.tls_cert, self.tls_key, self.tls_client_ca).credentials()

    def interceptor(self) -> AccessInterceptor | None:
        """Token auth and quotas as one interceptor; None when both are off."""
        limits = self.limits()
        if self.tokens is None and not limits.enabled:
            return None
        store = TokenStore(self.tokens) if self.tokens is not None else None
        return AccessInterceptor(store, ClientQuotas(limits))

    def describe(self) -> str:
        """One line for the startup log (paths and limits; never a secret)."""
        transport = "mutual TLS" if self.tls_client_ca else "TLS" if self.tls else "plaintext"
        parts = [transport, f"token auth ({self.tokens})" if self.tokens else "no auth"]
        if self.rate_per_s is not None:
            parts.append(f"{self.rate_per_s:g} req/s per client")
        if self.max_concurrent is not None:
            parts.append(f"{self.max_concurrent} concurrent per client")
        parts.append(f"max request {self.max_request_bytes} B")
        return ", ".join(parts)


def _typed(name: str, value: str) -> object:
    if name in ("tls_cert", "tls_key", "tls_client_ca", "tokens"):
        return Path(value)
    if name == "rate_per_s":
        return float(value)
    return int(value)


def add_security_arguments(parser: argparse.ArgumentParser) -> None:
    """``--tls-cert`` ... ``--max-request-bytes``, defaulting to the environment variables."""
    group = parser.add_argument_group("API security (defaults from JUDGELAB_* variables)")
    for item in fields(SecurityOptions):
        flag = "--" + item.name.replace("_", "-")
        group.add_argument(
            flag,
            dest=f"security_{item.name}",
            default=None,
            help=f"{HELP[item.name]} (env {ENVIRONMENT[item.name]})",
        )


def security_from_args(
    args: argparse.Namespace, environ: Mapping[str, str] | None = None
) -> SecurityOptions:
    """Flags given on the command line win over the environment."""
    flags = {name: getattr(args, f"security_{name}", None) for name in ENVIRONMENT}
    return security_from_flags(flags, environ)


def security_from_flags(
    flags: Mapping[str, object | None], environ: Mapping[str, str] | None = None
) -> SecurityOptions:
    """``flags`` (SecurityOptions field name -> value or None) over the environment."""
    env = dict(os.environ if environ is None else environ)
    for name, value in flags.items():
        if value is not None:
            env[ENVIRONMENT[name]] = str(value)
    return SecurityOptions.from_env(env)


_process_default = SecurityOptions()


def set_process_security(options: SecurityOptions) -> None:
    """What servers built without explicit options use (a service main sets it once)."""
    global _process_default
    _process_default = options


def process_security() -> SecurityOptions:
    return _process_default
