"""Per-prompt rubrics written by the gold judge: the request it is sent and its reply, cleaned.

The gold judge is asked (template ``rubric-writer-v1``, or ``rubric-writer-ref-v1`` when the
data set gives the prompt a reference answer) for a few numbered criteria specific to one
prompt. Its reply is cleaned before any judge sees it: reasoning (``<think>`` blocks, or all
text up to a stray ``</think>``) is dropped, only list items are kept, renumbered, each cut to
``MAX_CRITERION_CHARS``, at most ``MAX_CRITERIA`` of them and ``MAX_RUBRIC_CHARS`` in all.
A reply with no usable criterion is an invalid rubric (a value with a reason), not an error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from judgelab.engines.base import ChatMessage
from judgelab.judging.samples import Prompt, prompt_text
from judgelab.judging.templates import (
    RUBRIC_WRITER_ID,
    RUBRIC_WRITER_REF_ID,
    Template,
    load_template,
)

MAX_CRITERIA = 8
MAX_CRITERION_CHARS = 300
MAX_RUBRIC_CHARS = 1500
RubricProblem = Literal["empty_output", "no_criteria", "unfinished_reasoning"]

_THINK_BLOCK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_LIST_ITEM = re.compile(r"^\s*(?:\d{1,2}\s*[.):]|[-*•])\s+(?P<text>\S.*)$")
#: What a model copying the template's answer format writes instead of a criterion.
_PLACEHOLDER_ITEM = re.compile(r"^<[^<>]*>$")


@dataclass(frozen=True)
class WrittenRubric:
    """One prompt's cleaned rubric; ``text`` is "" and ``problem`` says why when unusable."""

    text: str
    criteria: int
    problem: RubricProblem | None = None
    #: The reply hit the token limit: its last list item may be cut short, so it was dropped.
    truncated: bool = False

    @property
    def valid(self) -> bool:
        return self.problem is None


def writer_template(with_reference: bool) -> Template:
    return load_template(RUBRIC_WRITER_REF_ID if with_reference else RUBRIC_WRITER_ID)


def writer_conversation(
    prompt: Prompt, reference: str | None
) -> tuple[Template, list[ChatMessage]]:
    """The template used and the conversation asking the gold judge for ``prompt``'s rubric."""
    template = writer_template(with_reference=reference is not None and bool(reference.strip()))
    values = {"prompt": prompt_text(prompt), "reference": reference or ""}
    return template, template.render(values)


def parse_rubric(text: str, finish_reason: str = "stop") -> WrittenRubric:
    """The gold judge's reply (its final text) as a clean numbered rubric."""
    answer = _without_reasoning(text)
    if answer is None:
        return WrittenRubric("", 0, "unfinished_reasoning", truncated=finish_reason == "length")
    if not answer.strip():
        return WrittenRubric("", 0, "empty_output")
    items = [m["text"].strip() for line in answer.splitlines() if (m := _LIST_ITEM.match(line))]
    items = [item for item in items if not _PLACEHOLDER_ITEM.match(item)]
    truncated = finish_reason == "length"
    if truncated and items:
        items = items[:-1]
    kept: list[str] = []
    used = 0
    for item in items[:MAX_CRITERIA]:
        line = f"{len(kept) + 1}. {_cut(item, MAX_CRITERION_CHARS)}"
        if used + len(line) + 1 > MAX_RUBRIC_CHARS:
            break
        kept.append(line)
        used += len(line) + 1
    if not kept:
        return WrittenRubric("", 0, "no_criteria", truncated=truncated)
    return WrittenRubric("\n".join(kept), len(kept), truncated=truncated)


def _without_reasoning(text: str) -> str | None:
    """``text`` without its reasoning; None when the reply never left its reasoning."""
    stripped = _THINK_BLOCK.sub("", text)
    lowered = stripped.lower()
    if "</think>" in lowered:  # the template opened the block: the answer follows its end
        stripped = stripped[lowered.rindex("</think>") + len("</think>") :]
    elif "<think>" in lowered:
        return None
    return stripped


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    head = text[: limit - 1].rsplit(" ", 1)[0]
    return head.rstrip(" ,;:") + "…"
