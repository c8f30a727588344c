"""What a judge is given: a (prompt, response) sample or a (prompt, A, B) pair."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from judgelab.engines.base import ChatMessage

#: The conversation a response answers: plain text, or chat turns ending with the user's.
Prompt = str | Sequence[ChatMessage]


@dataclass(frozen=True)
class Sample:
    """One response to judge pointwise; ``reference`` is needed by reference-guided judges,
    ``rubric`` (the gold judge's rubric for the prompt) by gold-rubric judges."""

    id: str
    prompt: Prompt
    response: str
    reference: str | None = None
    rubric: str | None = None


@dataclass(frozen=True)
class Pair:
    """Two responses to the same prompt, judged pairwise."""

    id: str
    prompt: Prompt
    response_a: str
    response_b: str
    reference: str | None = None
    rubric: str | None = None


def prompt_text(prompt: Prompt) -> str:
    """The prompt as the judge reads it: one user turn verbatim, else a role-tagged transcript."""
    if isinstance(prompt, str):
        return prompt
    if len(prompt) == 1 and prompt[0].role == "user":
        return prompt[0].content
    return "\n\n".join(f"[{message.role}]\n{message.content}" for message in prompt)


def reference_text(item_id: str, reference: str | None, needed: bool) -> str:
    """The reference for the prompt ("" when the judge ignores references)."""
    if not needed:
        return ""
    if reference is None:
        raise ValueError(f"sample {item_id!r}: a reference-guided judge needs a reference answer")
    return reference
