"""Server TLS and mutual TLS from PEM files, re-read when the files change.

The files are typically a mounted Kubernetes Secret (``tls.crt``, ``tls.key``, ``ca.crt`` of a
cert-manager certificate). The kubelet swaps a Secret's files atomically when the certificate
is renewed; gRPC asks :meth:`CertificateFiles.fetch` for the current configuration on every new
connection, so renewed certificates are served without a restart (open connections keep the
certificate they started with).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

import grpc

log = logging.getLogger(__name__)


class TlsConfigError(ValueError):
    """A TLS file is missing or unreadable; the message names it."""


@dataclass
class CertificateFiles:
    """Server certificate chain + key, and (for mutual TLS) the CA that signs client certs."""

    cert: Path
    key: Path
    client_ca: Path | None = None  # set: clients must present a certificate signed by it
    _stamp: tuple[float, ...] = field(default=(), init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @property
    def mutual(self) -> bool:
        return self.client_ca is not None

    def credentials(self) -> grpc.ServerCredentials:
        initial = self._configuration()
        return grpc.dynamic_ssl_server_credentials(
            initial,
            self.fetch,  # type: ignore[arg-type]  # None means "unchanged" (grpc docs)
            require_client_authentication=self.mutual,
        )

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """A new configuration if a file changed since the last one, else None (keep it)."""
        try:
            if self._current_stamp() == self._stamp:
                return None
            configuration = self._configuration()
        except (OSError, TlsConfigError) as error:
            # Mid-rotation reads can fail; keep serving the certificate we have.
            log.warning("TLS files unreadable, keeping the current certificate: %s", error)
            return None
        log.info("TLS certificate files changed: serving the new certificate")
        return configuration

    def _paths(self) -> list[Path]:
        return [self.cert, self.key, *([self.client_ca] if self.client_ca else [])]

    def _current_stamp(self) -> tuple[float, ...]:
        return tuple(path.stat().st_mtime for path in self._paths())

    def _configuration(self) -> grpc.ServerCertificateConfiguration:
        with self._lock:
            stamp = self._current_stamp() if all(p.is_file() for p in self._paths()) else ()
            pair = (_read(self.key, "TLS key"), _read(self.cert, "TLS certificate"))
            roots = _read(self.client_ca, "client CA") if self.client_ca else None
            self._stamp = stamp
        return grpc.ssl_server_certificate_configuration([pair], root_certificates=roots)


def _read(path: Path, what: str) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as error:
        raise TlsConfigError(f"{what} file {path}: {error.strerror or error}") from None
    if b"-----BEGIN" not in data:
        raise TlsConfigError(f"{what} file {path} is not PEM (no -----BEGIN line)")
    return data
