"""Learning that a child serves: its announce line in the log, then gRPC health SERVING."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import grpc

from judgelab.client.health import describe_failure, health_config, health_status

TAIL_LINES = 30


def log_tail(path: Path, start: int = 0, lines: int = TAIL_LINES) -> str:
    """The last `lines` lines of a log file from byte `start` on ("" if it does not exist)."""
    try:
        with path.open("rb") as handle:
            handle.seek(start)
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def find_announce(path: Path, start: int) -> dict[str, Any] | None:
    """The first JSON object line with a "service" key written to the log after `start`."""
    try:
        with path.open("rb") as handle:
            handle.seek(start)
            lines = handle.read().decode("utf-8", errors="replace").splitlines()
    except OSError:
        return None
    for line in lines:
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            fields = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(fields, dict) and "service" in fields:
            return fields
    return None


def wait_announce(
    process: subprocess.Popen[bytes], path: Path, start: int, timeout_s: float
) -> dict[str, Any] | str:
    """The announce fields, or why there are none (exited / timed out)."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = find_announce(path, start)
        if found is not None:
            return found
        code = process.poll()
        if code is not None:
            return f"exited with code {code} before announcing its ports"
        if time.monotonic() >= deadline:
            return f"did not announce its ports within {timeout_s:g} s"
        time.sleep(0.1)


def wait_serving(
    process: subprocess.Popen[bytes],
    address: str,
    timeout_s: float,
    environ: Mapping[str, str] | None = None,
) -> str | None:
    """None once gRPC health (overall) says SERVING, else why not. Over TLS when the service
    serves TLS (the environment it inherits, ``environ`` or this process's, says so)."""
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    config = health_config(address, environ)
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return f"exited with code {process.returncode} before serving"
        try:
            status = health_status(config, timeout_s=2.0)
        except grpc.RpcError as err:
            last = describe_failure(err, config)
        else:
            if status == "SERVING":
                return None
            last = status
        time.sleep(0.2)
    return f"was not SERVING on {address} within {timeout_s:g} s (last: {last})"
