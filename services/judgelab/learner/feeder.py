"""The prompts of one arm's GRPO steps onto ``jl:{exp}:prompts``, fed by the learner itself.

Prompts are pushed step by step, ``max_staleness + 1`` steps ahead of the steps trained, so no
rollout group is sampled by a policy older than the learner accepts; each step's prompts go in
one transaction (the generator samples them as one batch). Ids are ``{arm}:step{k}:{prompt id}``
(unique per send, the same on a rerun) and the last pushed step is kept in a marker file
(``pushed.json`` in the arm's directory): a restarted learner pushes only what was not pushed.
A group the learner dropped as too stale (``progress.json``) is replaced by the same prompt
under ``{dropped id}:retry{n}``, once: the replaced ids are kept in the same marker. (A crash
between a push and its marker write pushes the same ids again; the generator answers an id
once.) The learner runs it on rank 0 (``--feed-prompts``), locally and on a cluster alike.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import redis

from judgelab.atomic_files import write_text_atomic
from judgelab.engines.base import ChatMessage, Role
from judgelab.queues import Producer, StreamNames
from judgelab.queues.messages import Prompt, PromptMessage
from judgelab.spec.policy import GrpoAlgorithm

PUSHED_FILE = "pushed.json"
TRAIN_PROMPTS = Path("annotate") / "policy_train.jsonl"
_RETRY = re.compile(r"^(?P<original>.+):retry(?P<n>[0-9]+)$")


class PromptFeeder:
    """Pushes each learner step's prompts once, a bounded number of steps ahead, and one
    replacement per group the learner dropped."""

    def __init__(
        self,
        client: redis.Redis,
        names: StreamNames,
        arm: str,
        prompts: Sequence[dict[str, Any]],
        algorithm: GrpoAlgorithm,
        marker: Path,
    ) -> None:
        if not prompts:
            raise RuntimeError("no policy-training prompts (annotate/policy_train.jsonl is empty)")
        self.producer = Producer(client)
        self.stream = names.prompts
        self.arm = arm
        self.prompts = list(prompts)
        self.per_step = algorithm.prompts_per_step
        self.total_steps = algorithm.steps
        self.ahead = algorithm.max_staleness + 1
        self.marker = marker

    @property
    def pushed(self) -> int:
        """The last step whose prompts are on the stream."""
        return int(self._marker().get("pushed_steps", 0))

    @property
    def replaced(self) -> list[str]:
        """The dropped group ids whose replacement is on the stream."""
        return [str(group_id) for group_id in self._marker().get("replaced", [])]

    def feed(self, done: int, dropped: Sequence[str] = ()) -> None:
        """Replace the ``dropped`` groups not replaced yet, then push every step up to
        ``done + ahead`` not pushed yet (``done``: steps trained)."""
        self.replace(dropped)
        target = min(self.total_steps, done + self.ahead)
        for step in range(self.pushed + 1, target + 1):
            # One transaction per step: the generator reads the step's prompts as one batch.
            entries = [message.to_fields() for message in self.messages(step)]
            self.producer.add_all(self.stream, entries, wait_s=60.0)
            self._write_marker(pushed_steps=step)

    def replace(self, dropped: Sequence[str]) -> None:
        """Push one replacement prompt per dropped group id not replaced yet (one transaction)."""
        replaced = self.replaced
        done = set(replaced)
        todo = [group_id for group_id in dict.fromkeys(dropped) if group_id not in done]
        if not todo:
            return
        entries = [self.replacement(group_id).to_fields() for group_id in todo]
        self.producer.add_all(self.stream, entries, wait_s=60.0)
        self._write_marker(replaced=[*replaced, *todo])

    def replacement(self, group_id: str) -> PromptMessage:
        """The prompt of dropped group ``group_id`` under the next ``:retry{n}`` id."""
        original, retry = group_id, 0
        message = self._pushed_message(group_id)
        match = _RETRY.match(group_id)
        if message is None and match is not None:
            original, retry = match["original"], int(match["n"])
            message = self._pushed_message(original)
        if message is None:
            raise RuntimeError(
                f"the learner dropped group {group_id!r}, which is no prompt this feeder pushed"
            )
        return dataclasses.replace(message, id=f"{original}:retry{retry + 1}")

    def _pushed_message(self, prompt_id: str) -> PromptMessage | None:
        prefix = f"{self.arm}:step"
        step_text = prompt_id.removeprefix(prefix).partition(":")[0]
        if not prompt_id.startswith(prefix) or not step_text.isdigit():
            return None
        return next((m for m in self.messages(int(step_text)) if m.id == prompt_id), None)

    def _marker(self) -> dict[str, Any]:
        if not self.marker.is_file():
            return {}
        data: dict[str, Any] = json.loads(self.marker.read_text())
        return data

    def _write_marker(self, **changes: Any) -> None:
        data = {"pushed_steps": self.pushed, "replaced": self.replaced} | changes
        write_text_atomic(self.marker, json.dumps(data) + "\n")

    def messages(self, step: int) -> list[PromptMessage]:
        """Step ``step``'s prompts: the next ``per_step`` of the training prompts, cycling."""
        start = (step - 1) * self.per_step
        rows = [self.prompts[(start + j) % len(self.prompts)] for j in range(self.per_step)]
        return [
            PromptMessage(
                id=f"{self.arm}:step{step}:{row['id']}",
                prompt=_prompt(row["prompt"]),
                reference=row.get("reference"),
                arm=self.arm,
                rubric=row.get("rubric"),
            )
            for row in rows
        ]


def load_prompts(path: Path) -> list[dict[str, Any]]:
    """Annotate's ``policy_train.jsonl`` rows ({id, prompt, reference, rubric?, ...})."""
    if not path.is_file():
        raise RuntimeError(f"{path} is missing: the Annotate unit writes it")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def _prompt(raw: Any) -> Prompt:
    if isinstance(raw, str):
        return raw
    return [ChatMessage(cast(Role, turn["role"]), turn["content"]) for turn in raw]
