"""Generation/scoring backends behind one interface (see ``base``).

Heavy backends (torch, transformers, httpx) are imported inside ``build_engine``
only, so importing this package stays cheap (the CLI's ``--help`` must be fast).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from judgelab.engines.base import (
    CandidateScores,
    ChatMessage,
    Conversation,
    Engine,
    EngineError,
    Generation,
    SamplingParams,
)

if TYPE_CHECKING:
    from judgelab.spec.model import ModelSpec

__all__ = [
    "CandidateScores",
    "ChatMessage",
    "Conversation",
    "Engine",
    "EngineError",
    "Generation",
    "SamplingParams",
    "build_engine",
]


def build_engine(spec: ModelSpec) -> Engine:
    """The engine a model spec asks for (``builtin:`` names are de-quantized and cached once)."""
    if spec.engine == "transformers":
        from judgelab.engines.transformers_engine import TransformersEngine

        return TransformersEngine.from_spec(spec)
    if spec.engine == "openai":
        from judgelab.engines.openai_engine import OpenAIEngine

        return OpenAIEngine.from_spec(spec)
    raise EngineError(f"unknown engine {spec.engine!r}")
