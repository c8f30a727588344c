"""Fixtures for integration tests: a real OpenAI-compatible server (llama.cpp) on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from judgelab.engines import build_engine
from judgelab.engines.builtin import ensure_builtin
from judgelab.engines.llamacpp_server import INSTALL_HINT, missing_server_modules, running_server
from judgelab.engines.transformers_engine import TransformersEngine
from judgelab.spec.model import ModelSpec

BUILTIN = "builtin:smollm2-135m-instruct"


@pytest.fixture(scope="session")
def builtin_dir() -> Path:
    """The de-quantized cache of the built-in model (made on first use, about 30 s)."""
    return ensure_builtin(BUILTIN)


@pytest.fixture(scope="session")
def builtin_engine(builtin_dir: Path) -> TransformersEngine:
    engine = build_engine(ModelSpec(name=BUILTIN, device="cpu"))
    assert isinstance(engine, TransformersEngine)
    return engine


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
