"""Make a throw-away PKI for local TLS / mutual TLS: a CA, a server cert and client certs.

    python scripts/dev_certs.py OUT_DIR [--host 127.0.0.1] [--client team-a ...]

Writes ``ca.pem``, ``server.pem``/``server.key`` (SAN: localhost, 127.0.0.1 and --host) and
``CLIENT.pem``/``CLIENT.key`` per client (CN = the client name), all with the ``openssl``
command line tool (no Python dependency). For tests, benchmarks and trying TLS on a laptop;
production certificates come from your CA (e.g. cert-manager) as Kubernetes Secrets.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

DAYS = "2"


@dataclass(frozen=True)
class DevPki:
    """Paths of one generated PKI."""

    directory: Path
    ca: Path
    server_cert: Path
    server_key: Path

    def client_cert(self, name: str) -> Path:
        return self.directory / f"{name}.pem"

    def client_key(self, name: str) -> Path:
        return self.directory / f"{name}.key"


def _openssl(*args: str) -> None:
    done = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed: {done.stderr.strip()}")


def _key(path: Path) -> None:
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(path))


def _signed(directory: Path, name: str, subject: str, extensions: str, ca: str) -> None:
    key, csr, cert = (directory / f"{name}.{ext}" for ext in ("key", "csr", "pem"))
    _key(key)
    _openssl("req", "-new", "-key", str(key), "-subj", subject, "-out", str(csr))
    with tempfile.NamedTemporaryFile("w", suffix=".ext", delete=False) as ext_file:
        ext_file.write(extensions)
    _openssl(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        f"{ca}.pem",
        "-CAkey",
        f"{ca}.key",
        "-CAcreateserial",
        "-days",
        DAYS,
        "-sha256",
        "-extfile",
        ext_file.name,
        "-out",
        str(cert),
    )
    Path(ext_file.name).unlink()
    csr.unlink()


def make_ca(directory: Path, name: str = "ca") -> Path:
    """A self-signed CA at ``directory/NAME.pem`` (key at ``NAME.key``)."""
    directory.mkdir(parents=True, exist_ok=True)
    _key(directory / f"{name}.key")
    _openssl(
        "req",
        "-x509",
        "-new",
        "-key",
        str(directory / f"{name}.key"),
        "-days",
        DAYS,
        "-sha256",
        "-subj",
        f"/CN=judgelab dev {name}",
        "-out",
        str(directory / f"{name}.pem"),
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    )
    return directory / f"{name}.pem"


def make_client(directory: Path, name: str, ca: str = "ca") -> None:
    """A client certificate with CN ``name``, signed by CA ``ca`` of ``directory``."""
    _signed(
        directory,
        name,
        f"/CN={name}",
        "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
        str(directory / ca),
    )


def make_dev_pki(
    directory: Path, hosts: Sequence[str] = (), clients: Sequence[str] = ("client",)
) -> DevPki:
    make_ca(directory)
    names = ["DNS:localhost", "IP:127.0.0.1", *(_san(host) for host in hosts)]
    _signed(
        directory,
        "server",
        "/CN=localhost",
        f"basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
        f"subjectAltName={','.join(dict.fromkeys(names))}\n",
        str(directory / "ca"),
    )
    for client in clients:
        make_client(directory, client)
    return DevPki(
        directory, directory / "ca.pem", directory / "server.pem", directory / "server.key"
    )


def _san(host: str) -> str:
    return f"IP:{host}" if host.replace(".", "").isdigit() or ":" in host else f"DNS:{host}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="directory to write the PEM files to")
    parser.add_argument("--host", action="append", default=[], help="extra server SAN")
    parser.add_argument("--client", action="append", default=None, help="client cert name")
    args = parser.parse_args(argv)
    pki = make_dev_pki(args.out, args.host, args.client or ["client"])
    print(f"wrote a dev PKI to {pki.directory} (CA {pki.ca.name}, valid {DAYS} days)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
