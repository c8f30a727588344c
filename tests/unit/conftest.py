"""Shared unit-test fixtures: the tiny in-process model behind the real transformers engine."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from judgelab.engines.transformers_engine import TransformersEngine


@pytest.fixture(scope="session")
def tiny_engine() -> TransformersEngine:
    """One tiny engine (seed 0, batches of 8) for the session. Tests must not modify it."""
    from judgelab.engines.tiny import tiny_engine as build

    return build(seed=0, max_batch_size=8)
