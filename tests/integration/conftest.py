"""Fixtures for integration tests: a real OpenAI-compatible server (llama.cpp) on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from judgelab.engines.llamacpp_server import INSTALL_HINT, missing_server_modules, running_server


@pytest.fixture(scope="session")
def llamacpp_base_url() -> Iterator[str]:
    """Base URL of llama-cpp-python's server on the built-in SmolLM2 GGUF, for the session.

    Missing llama-cpp-python is a failure, not a skip: CI installs it, and a silently
    skipped integration suite would hide a broken engine. Deselect with -m 'not llamacpp'.
    """
    missing = missing_server_modules()
    if missing:
        pytest.fail(f"{INSTALL_HINT} (missing modules: {', '.join(missing)})", pytrace=False)
    with running_server() as base_url:
        yield base_url
