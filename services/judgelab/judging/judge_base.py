"""What every judge holds: its engine, config and rendered prompt."""

from __future__ import annotations

from typing import ClassVar

from judgelab.engines.base import Engine
from judgelab.judging.config import JudgeConfig
from judgelab.judging.prompting import JudgePrompt
from judgelab.judging.templates import Template


class JudgeBase:
    """One engine, config and template (default: the config's) for one protocol."""

    protocol: ClassVar[str]

    def __init__(
        self,
        engine: Engine,
        config: JudgeConfig,
        template: Template | None = None,
        rubric: Template | None = None,
        count_prompt_tokens: bool = True,
    ) -> None:
        if config.protocol != self.protocol:
            raise ValueError(f"judge {config.name!r} is {config.protocol}, not {self.protocol}")
        self.engine = engine
        self.config = config
        self.prompt = JudgePrompt(config, template, rubric)
        # Off for servers where counting costs a request (non-reasoning judges only).
        self.count_prompt_tokens = count_prompt_tokens
