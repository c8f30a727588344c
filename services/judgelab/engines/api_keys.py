"""Upstream API keys: read from an environment variable or a Secret file, kept out of logs.

``api_key_env: OPENAI_API_KEY`` in a model spec means: the key is ``$OPENAI_API_KEY``, or, when
that is unset, the content of the file named by ``$OPENAI_API_KEY_FILE`` (the ``_FILE``
convention: mount the Secret as a volume and point the variable at the file, so the key is in
no process environment). Every key read is registered for redaction: any log record whose
text contains it has it replaced by ``***`` (a log-record factory, so third-party loggers
such as httpx's are covered too).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from judgelab.engines.base import EngineError

REDACTED = "***"
_MIN_SECRET_CHARS = 6  # shorter strings would redact ordinary words
_secrets: set[str] = set()
_lock = threading.Lock()
_installed = False


def resolve_api_key(variable: str, environ: Mapping[str, str] | None = None) -> str:
    """The key named by ``variable`` (or ``variable``_FILE); EngineError if neither is set."""
    env = os.environ if environ is None else environ
    key = env.get(variable, "").strip()
    file_variable = f"{variable}_FILE"
    if not key and env.get(file_variable):
        key = _read_key_file(Path(env[file_variable]), file_variable)
    if not key:
        raise EngineError(
            f"environment variable {variable} (the spec's api_key_env) is not set or empty, "
            f"and neither is {file_variable}"
        )
    register_secret(key)
    return key


def _read_key_file(path: Path, variable: str) -> str:
    try:
        key = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or type(error).__name__
        raise EngineError(f"{variable}: cannot read the API key file {path}: {reason}") from None
    if not key:
        raise EngineError(f"{variable}: the API key file {path} is empty")
    return key


def redact(text: str) -> str:
    """``text`` with every registered secret replaced by ``***``."""
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def register_secret(secret: str) -> None:
    """Keep ``secret`` out of every log record from now on."""
    global _installed
    if len(secret) < _MIN_SECRET_CHARS:
        return
    with _lock:
        _secrets.add(secret)
        if not _installed:
            _install_record_factory()
            _installed = True


def _install_record_factory() -> None:
    previous = logging.getLogRecordFactory()

    def redacting_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string is logging's problem, not ours
            return record
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_info[1] is not None:
            shown = str(record.exc_info[1])
            if redact(shown) != shown:
                record.exc_text = redact(_format_exception(record))
        return record

    logging.setLogRecordFactory(redacting_factory)


def _format_exception(record: logging.LogRecord) -> str:
    assert record.exc_info is not None
    return logging.Formatter().formatException(record.exc_info)
