"""Turning a conversation into the exact prompt text a chat model sees."""

from __future__ import annotations

import logging
from typing import Any

from judgelab.engines.base import Conversation

log = logging.getLogger(__name__)

# ChatML, the format of SmolLM2 and the tiny test model; the fallback for tokenizers without one.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def ensure_chat_template(tokenizer: Any) -> None:
    """Give a tokenizer without a chat template (a base model) the ChatML one."""
    if not getattr(tokenizer, "chat_template", None):
        log.warning("tokenizer has no chat template; using ChatML")
        tokenizer.chat_template = CHATML_TEMPLATE


def render_prompt(tokenizer: Any, conversation: Conversation, assistant_prefix: str = "") -> str:
    """Chat template + assistant header + ``assistant_prefix``: the text the model continues."""
    messages = [{"role": m.role, "content": m.content} for m in conversation]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    if not isinstance(text, str):
        raise TypeError(f"chat template rendered {type(text).__name__}, expected str")
    return text + assistant_prefix
