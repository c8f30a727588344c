"""Where a judgelab service is and how to reach it: TLS, mutual TLS, bearer token.

``ChannelConfig.from_env`` reads ``JUDGELAB_CLIENT_*`` variables, so the same code runs
against a local plaintext server and a TLS + token deployment:

==================================== ===================================================
``JUDGELAB_CLIENT_TLS``              ``1``: TLS with the system's root CAs
``JUDGELAB_CLIENT_CA_FILE``          CA bundle to verify the server with (implies TLS)
``JUDGELAB_CLIENT_CERT_FILE``        client certificate for mutual TLS (with the key)
``JUDGELAB_CLIENT_KEY_FILE``         client private key
``JUDGELAB_CLIENT_SERVER_NAME``      name to check the server certificate against
``JUDGELAB_CLIENT_TOKEN``            bearer token
``JUDGELAB_CLIENT_TOKEN_FILE``       file holding the bearer token (e.g. a mounted Secret)
==================================== ===================================================
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import grpc

MAX_MESSAGE_BYTES = 64 * 2**20


@dataclass(frozen=True)
class ChannelConfig:
    address: str
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    server_name: str | None = None
    token: str | None = field(default=None, repr=False)
    token_file: Path | None = None
    max_message_bytes: int = MAX_MESSAGE_BYTES

    def __post_init__(self) -> None:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("mutual TLS needs both a client certificate and its key")
        if self.token is not None and self.token_file is not None:
            raise ValueError("give a token or a token file, not both")

    @classmethod
    def from_env(cls, address: str, environ: Mapping[str, str] | None = None) -> ChannelConfig:
        env = os.environ if environ is None else environ

        def path(name: str) -> Path | None:
            value = env.get(name)
            return Path(value) if value else None

        return cls(
            address,
            tls=env.get("JUDGELAB_CLIENT_TLS", "").lower() in ("1", "true", "yes"),
            ca_file=path("JUDGELAB_CLIENT_CA_FILE"),
            cert_file=path("JUDGELAB_CLIENT_CERT_FILE"),
            key_file=path("JUDGELAB_CLIENT_KEY_FILE"),
            server_name=env.get("JUDGELAB_CLIENT_SERVER_NAME") or None,
            token=env.get("JUDGELAB_CLIENT_TOKEN") or None,
            token_file=path("JUDGELAB_CLIENT_TOKEN_FILE"),
        )

    def with_address(self, address: str) -> ChannelConfig:
        return replace(self, address=address)

    @property
    def secure(self) -> bool:
        return self.tls or self.ca_file is not None or self.cert_file is not None

    def metadata(self) -> tuple[tuple[str, str], ...]:
        """The per-call metadata: the bearer token, if any."""
        token = self.token
        if self.token_file is not None:
            token = self.token_file.read_text(encoding="utf-8").strip()
        return (("authorization", f"Bearer {token}"),) if token else ()

    def credentials(self) -> grpc.ChannelCredentials:
        roots = self.ca_file.read_bytes() if self.ca_file else None
        key = self.key_file.read_bytes() if self.key_file else None
        chain = self.cert_file.read_bytes() if self.cert_file else None
        return grpc.ssl_channel_credentials(roots, key, chain)

    def options(self) -> list[tuple[str, object]]:
        options: list[tuple[str, object]] = [
            ("grpc.max_send_message_length", self.max_message_bytes),
            ("grpc.max_receive_message_length", self.max_message_bytes),
        ]
        if self.server_name:
            options.append(("grpc.ssl_target_name_override", self.server_name))
        return options

    def channel(self) -> grpc.Channel:
        if self.secure:
            return grpc.secure_channel(self.address, self.credentials(), self.options())
        return grpc.insecure_channel(self.address, self.options())

    def aio_channel(self) -> grpc.aio.Channel:
        if self.secure:
            return grpc.aio.secure_channel(self.address, self.credentials(), self.options())
        return grpc.aio.insecure_channel(self.address, self.options())


def as_config(target: str | ChannelConfig) -> ChannelConfig:
    return target if isinstance(target, ChannelConfig) else ChannelConfig(target)


def config_from_env(
    target: str | ChannelConfig, environ: Mapping[str, str] | None = None
) -> ChannelConfig:
    """How the study's own callers (units, learner) reach a service: a config as given, or for
    an address the ``JUDGELAB_CLIENT_*`` environment's (plaintext, no token when unset)."""
    if isinstance(target, ChannelConfig):
        return target
    return ChannelConfig.from_env(target, environ)


def access_hint(code: grpc.StatusCode, config: ChannelConfig) -> str:
    """What to set when a call failed for want of a token or of TLS ("" for other failures)."""
    if code == grpc.StatusCode.UNAUTHENTICATED:
        has_token = config.token is not None or config.token_file is not None
        sent = "a bearer token it does not accept" if has_token else "no bearer token"
        return (
            f" (sent {sent}: set JUDGELAB_CLIENT_TOKEN_FILE or JUDGELAB_CLIENT_TOKEN to a token "
            "the service's JUDGELAB_API_TOKENS holds)"
        )
    if code == grpc.StatusCode.UNAVAILABLE and not config.secure:
        return " (if the service serves TLS: set JUDGELAB_CLIENT_CA_FILE or JUDGELAB_CLIENT_TLS=1)"
    if code == grpc.StatusCode.UNAVAILABLE:
        return " (is it up, and does JUDGELAB_CLIENT_CA_FILE hold the CA of its certificate?)"
    return ""
