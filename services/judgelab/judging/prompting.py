"""A judge's prompt: its template and rubric checked against its config, rendered per item.

A fixed rubric is the same text for every item. A gold rubric (``rubric_source="gold"``) is
each item's own, written by the gold judge; it is framed by the rubric-writer template's
``judge`` section, and an item without one is the caller's error (ValueError naming it).
"""

from __future__ import annotations

from collections.abc import Mapping

from judgelab.engines.base import ChatMessage
from judgelab.judging.config import JudgeConfig
from judgelab.judging.parsing import PREFERENCE_PREFIX
from judgelab.judging.results import Stamp
from judgelab.judging.scale import SCORE_PREFIX
from judgelab.judging.templates import Template, load_template

RUBRIC_SECTION = "text"
#: The rubric-writer template's section that frames a gold rubric inside the judge's prompt.
GOLD_RUBRIC_SECTION = "judge"


class JudgePrompt:
    """Template + rubric of one judge, the answer format its config implies, and its stamp."""

    def __init__(
        self, config: JudgeConfig, template: Template | None = None, rubric: Template | None = None
    ) -> None:
        self.config = config
        self.template = template if template is not None else load_template(config.template_id)
        if rubric is None and config.rubric_id is not None:
            rubric = load_template(config.rubric_id)
        self.rubric = rubric
        _check_template(self.template, config)
        self.stamp = Stamp(
            judge=config.name,
            template_id=self.template.id,
            template_hash=self.template.sha256,
            config_hash=config.config_hash(self.template, rubric),
        )
        self._fixed = {
            "answer_format": answer_format(config),
            "scale_min": str(config.scale.min),
            "scale_max": str(config.scale.max),
        }
        if not config.gold_rubric:
            self._fixed["rubric"] = self._rubric_text()

    def render(self, values: Mapping[str, str]) -> list[ChatMessage]:
        return self.template.render({**self._fixed, **values})

    def item_values(self, item_id: str, rubric: str | None) -> dict[str, str]:
        """The per-item ``rubric`` value of a gold-rubric judge ({} for the others, which
        ignore an item's rubric); ValueError when the item has none."""
        if not self.config.gold_rubric:
            return {}
        if rubric is None or not rubric.strip():
            raise ValueError(
                f"item {item_id!r}: judge {self.config.name!r} needs the gold judge's rubric "
                "for this prompt (written by the Annotate phase) and got none"
            )
        assert self.rubric is not None  # loaded in __init__ from config.rubric_id
        framed = self.rubric.render_section(GOLD_RUBRIC_SECTION, {"rubric": rubric.strip()})
        return {"rubric": framed + "\n"}

    def _rubric_text(self) -> str:
        if self.rubric is None:
            return ""
        # The trailing newline leaves a blank line between the rubric and what follows.
        return self.rubric.render_section(RUBRIC_SECTION, {}) + "\n"


def answer_format(config: JudgeConfig) -> str:
    """The verdict format the judge is told to write; the bare value (no "Score: " label) for a
    non-reasoning judge on an engine that cannot prefill the label."""
    labelled = config.reasoning or config.prefill
    if config.protocol == "pointwise":
        return config.scale.answer_format(with_label=labelled)
    return f"{PREFERENCE_PREFIX}<X>" if labelled else "<X>"


def assistant_prefix(config: JudgeConfig) -> str:
    """What a non-reasoning judge's answer is prefilled with before its verdict is scored."""
    if not config.prefill:
        return ""
    return SCORE_PREFIX if config.protocol == "pointwise" else PREFERENCE_PREFIX


def _check_template(template: Template, config: JudgeConfig) -> None:
    wanted = (config.protocol, config.reasoning, config.reference_guided)
    found = (template.kind, template.reasoning, template.reference)
    if wanted != found:
        raise ValueError(
            f"judge {config.name!r}: template {template.id!r} is for (kind, reasoning, reference)"
            f" = {found}, the judge needs {wanted}"
        )
    if config.rubric and "rubric" not in template.placeholders:
        raise ValueError(
            f"judge {config.name!r}: rubric is on but {template.id!r} has no {{rubric}}"
        )
