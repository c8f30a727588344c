"""Groups that will never reach the learner: their prompt, rollouts or scores were dead-lettered.

The learner waits for ``prompts_per_step`` groups a step, and the runtime feeds prompts only a
bounded number of steps ahead of it, so a group lost on the way would leave it waiting forever.
While it waits with the scored stream drained, the learner reads the new entries of its arm's
three dead-letter streams (the prompts this arm's generators refused or gave up on, and the
arm's rollouts and scored streams) and fails the arm, naming each lost group and why it was
dead-lettered. It does not skip them: the runtime's prompts are fed per step, so training on
without them would shift every later step's data, and a dead-lettered group (a judge that fails
5 times, a malformed prompt) is a fault to fix, after which the arm resumes from its checkpoint.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import redis

from judgelab.queues.connection import through_outages
from judgelab.queues.groups import text
from judgelab.queues.names import StreamNames, dead_letter

_PAGE = 256
_NAMED = 10


@dataclass(frozen=True)
class LostGroup:
    group_id: str
    dead_stream: str
    reason: str


class LostGroups(RuntimeError):
    """Groups of this arm were dead-lettered: the arm cannot finish its steps as fed."""

    def __init__(self, arm: str, step: int, lost: list[LostGroup]) -> None:
        named = "; ".join(f"{g.group_id} ({g.dead_stream}: {g.reason})" for g in lost[:_NAMED])
        more = f"; and {len(lost) - _NAMED} more" if len(lost) > _NAMED else ""
        super().__init__(
            f"arm {arm}: {len(lost)} group(s) will never arrive, so step {step + 1} cannot be "
            f"filled: {named}{more}. Fix the cause, move the entries back to their streams "
            f"(XADD there, XDEL here) and rerun: the learner resumes from its checkpoint"
        )
        self.lost = lost


class DeadLetterWatch:
    """Reads the arm's dead-letter streams from where it last stopped."""

    def __init__(self, client: redis.Redis, names: StreamNames, arm: str) -> None:
        self.client = client
        self.prompts_dead = dead_letter(names.prompts)
        self.generator_group = names.generator_group(arm)
        streams = (
            self.prompts_dead,
            dead_letter(names.rollouts(arm)),
            dead_letter(names.scored(arm)),
        )
        self.cursors = dict.fromkeys(streams, "-")

    def new_entries(self) -> list[LostGroup]:
        """Dead-lettered groups of this arm added since the last call (all, on the first)."""
        return through_outages(self.client, self._scan, "reading dead-letter streams")

    def _scan(self) -> list[LostGroup]:
        lost: list[LostGroup] = []
        cursors = dict(self.cursors)  # committed only once every stream was read
        for stream in cursors:
            while True:
                reply: Any = self.client.xrange(stream, min=cursors[stream], max="+", count=_PAGE)
                rows: list[tuple[bytes, dict[bytes, bytes]]] = list(reply or [])
                lost += [g for _, fields in rows if (g := self._lost(stream, fields)) is not None]
                if rows:
                    cursors[stream] = f"({text(rows[-1][0])}"
                if len(rows) < _PAGE:
                    break
        self.cursors = cursors
        return lost

    def _lost(self, stream: str, fields: dict[bytes, bytes]) -> LostGroup | None:
        if stream == self.prompts_dead and _field(fields, "dead_group") != self.generator_group:
            return None  # another arm's generators gave up on it
        key = "id" if stream == self.prompts_dead else "group_id"
        group_id = _data(fields).get(key)
        if not isinstance(group_id, str) or not group_id:
            group_id = f"<unreadable entry {_field(fields, 'dead_id')}>"
        return LostGroup(group_id, stream, _field(fields, "dead_reason"))


def _field(fields: dict[bytes, bytes], name: str) -> str:
    raw = fields.get(name.encode(), b"")
    return raw.decode("utf-8", "replace")


def _data(fields: dict[bytes, bytes]) -> dict[str, object]:
    try:
        data = json.loads(fields.get(b"data", b"{}"))
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
