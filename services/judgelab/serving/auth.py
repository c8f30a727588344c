"""Bearer tokens per client, from a file or a mounted Kubernetes Secret.

Two layouts, both mapping a client name to its token:

* a directory (a Secret mounted as a volume): one file per client, the file name is the client
  name and its content the token, e.g. ``kubectl create secret generic judgelab-api-tokens
  --from-literal=team-a=$(openssl rand -hex 32)``; Kubernetes' own ``..data`` entries and other
  dot-files are skipped;
* a YAML/JSON file: ``{team-a: TOKEN, team-b: TOKEN}``.

The store re-reads its source when it changes (checked at most every ``reload_every_s``), so a
rotated Secret takes effect without a restart. Tokens are compared with
:func:`hmac.compare_digest` against every entry (no early exit), and never logged or put in an
error message: only client names are.
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml

log = logging.getLogger(__name__)

AUTHORIZATION = "authorization"
BEARER = "bearer "
MIN_TOKEN_CHARS = 16


class TokenFileError(ValueError):
    """The tokens file or directory is unusable; the message names it (never a token)."""


def load_tokens(source: Path) -> dict[str, str]:
    """Client name -> token from ``source`` (a directory or a YAML/JSON mapping file)."""
    if source.is_dir():
        raw = {
            p.name: p.read_text(encoding="utf-8")
            for p in sorted(source.iterdir())
            if not p.name.startswith(".") and p.is_file()
        }
    else:
        raw = _mapping_file(source)
    tokens = {name: token.strip() for name, token in raw.items()}
    _check(source, tokens)
    return tokens


def _mapping_file(source: Path) -> dict[str, str]:
    try:
        loaded = yaml.safe_load(source.read_text(encoding="utf-8"))
    except OSError as error:
        raise TokenFileError(f"tokens file {source}: {error.strerror or error}") from None
    except yaml.YAMLError:
        raise TokenFileError(f"tokens file {source} is not YAML/JSON") from None
    if not isinstance(loaded, dict):
        raise TokenFileError(f"tokens file {source} must map client names to tokens")
    bad = sorted(str(name) for name, token in loaded.items() if not isinstance(token, str))
    if bad:
        raise TokenFileError(f"tokens file {source}: the token of {', '.join(bad)} is not a string")
    return {str(name): token for name, token in loaded.items()}


def _check(source: Path, tokens: Mapping[str, str]) -> None:
    if not tokens:
        raise TokenFileError(f"tokens source {source} names no client")
    short = sorted(name for name, token in tokens.items() if len(token) < MIN_TOKEN_CHARS)
    if short:
        raise TokenFileError(
            f"tokens source {source}: the token of {', '.join(short)} is shorter than "
            f"{MIN_TOKEN_CHARS} characters"
        )
    seen: dict[str, str] = {}
    for name, token in tokens.items():
        if token in seen:
            raise TokenFileError(f"tokens source {source}: {seen[token]} and {name} share a token")
        seen[token] = name


def bearer_token(metadata: Sequence[tuple[str, str | bytes]] | None) -> str | None:
    """The token of an ``authorization: Bearer TOKEN`` metadata entry, if there is one."""
    for key, value in metadata or ():
        if key != AUTHORIZATION:
            continue
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
        if text[: len(BEARER)].lower() == BEARER:
            return text[len(BEARER) :].strip()
        return None
    return None


class TokenStore:
    """Which client a token belongs to, following changes to its source."""

    def __init__(self, source: Path, reload_every_s: float = 5.0) -> None:
        self.source = source
        self.reload_every_s = reload_every_s
        self._lock = threading.Lock()
        self._entries = self._encode(load_tokens(source))
        self._stamp = self._source_stamp()
        self._checked_at = time.monotonic()

    @property
    def clients(self) -> list[str]:
        return [name for name, _ in self._entries]

    def client_for(self, token: str | None) -> str | None:
        """The client name whose token this is; None for no token or an unknown one."""
        self._maybe_reload()
        if not token:
            return None
        given = token.encode("utf-8")
        found = None
        for name, expected in self._entries:  # every entry: timing does not reveal which
            if hmac.compare_digest(expected, given):
                found = name
        return found

    def _maybe_reload(self) -> None:
        now = time.monotonic()
        if now - self._checked_at < self.reload_every_s:
            return
        with self._lock:
            if now - self._checked_at < self.reload_every_s:
                return
            self._checked_at = now
            stamp = self._source_stamp()
            if stamp == self._stamp:
                return
            try:
                entries = self._encode(load_tokens(self.source))
            except (OSError, TokenFileError) as error:
                log.warning("keeping the previous tokens: %s", error)
                return
            self._entries, self._stamp = entries, stamp
            log.info("tokens reloaded from %s: clients %s", self.source, ", ".join(self.clients))

    def _source_stamp(self) -> tuple[tuple[str, float], ...]:
        try:
            if self.source.is_dir():
                # A Secret update swaps the ..data symlink: the resolved path changes.
                return tuple(
                    (str(p.resolve()), p.stat().st_mtime)
                    for p in sorted(self.source.iterdir())
                    if p.is_file()
                )
            return ((str(self.source.resolve()), self.source.stat().st_mtime),)
        except OSError:
            return ()

    @staticmethod
    def _encode(tokens: Mapping[str, str]) -> list[tuple[str, bytes]]:
        return [(name, token.encode("utf-8")) for name, token in sorted(tokens.items())]
