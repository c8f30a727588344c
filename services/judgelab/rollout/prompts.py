"""The message on ``jl:{experiment}:prompts``: one prompt to sample a rollout group for.

``id`` is the idempotency key (a prompt message is answered once per arm) and becomes the
group id, so a producer that sends the same data-set prompt again (a later step or epoch) gives
the message a new id, e.g. ``f"s{step}-{prompt_id}"``. ``arm`` None: every arm samples it;
set: only that arm's generators do (the others acknowledge it without output).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Self

from judgelab.engines.base import ChatMessage
from judgelab.queues.codec import Reader
from judgelab.queues.messages import Message, Prompt, _prompt_json, _read_prompt


@dataclass(frozen=True)
class PromptMessage(Message):
    """A prompt (plain text = one user turn, or chat turns ending with the user's)."""

    KIND: ClassVar[str] = "prompt"

    id: str
    prompt: Prompt
    reference: str | None = None
    arm: str | None = None

    def conversation(self) -> list[ChatMessage]:
        if isinstance(self.prompt, str):
            return [ChatMessage("user", self.prompt)]
        return list(self.prompt)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "prompt": _prompt_json(self.prompt),
            "reference": self.reference,
            "arm": self.arm,
        }

    @classmethod
    def from_json(cls, data: Reader) -> Self:
        return cls(
            id=data.text("id", nonempty=True),
            prompt=_read_prompt(data),
            reference=data.opt_text("reference"),
            arm=data.opt_text("arm"),
        )
