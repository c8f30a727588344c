"""The rollout generator's Redis-stream mode: prompts in, one rollout group per prompt out.

Every prompt of one read is sampled in one batch (the first ``finish`` runs it for all), so the
engine sees len(prompts) x G rows at once. Before a batch is pushed its policy version is
checked against the latest published one: a batch more than ``max_staleness`` versions behind
is dropped (counted), the newest version is loaded and the batch sampled again, at most
``max_attempts`` times; after that the prompts stay pending and are redelivered later, so a
prompt is never lost and never answered with stale rollouts. Each pushed group carries the
seconds its batch spent sampling (``sample_s``, every attempt), the learner's generate time.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

from judgelab.queues.consumer import Delivery, Output
from judgelab.queues.messages import PromptMessage, Rollout, RolloutGroup
from judgelab.queues.names import StreamNames, generator_group
from judgelab.rollout.generator import GroupResult, PromptInput, RolloutGenerator
from judgelab.serving.errors import invalid
from judgelab.serving.stream_worker import Finish

log = logging.getLogger(__name__)

CONSUMER_GROUP = "rollout-generator"


def consumer_group(arm: str) -> str:
    """Each arm's generators form their own group on the shared prompts stream."""
    return generator_group(arm)


class StaleRollouts(RuntimeError):
    """The policy kept moving on faster than a batch could be sampled."""


class _Batch:
    """Prompts submitted by one read, sampled together on the first ``result`` call."""

    def __init__(self, sampler: PromptSampler) -> None:
        self.sampler = sampler
        self.messages: list[PromptMessage] = []
        self._groups: dict[str, GroupResult] | None = None
        self._error: Exception | None = None

    def result(self, message_id: str) -> GroupResult:
        if self._groups is None and self._error is None:
            try:
                self._groups = self.sampler.sample_fresh(self.messages)
            except Exception as error:  # every message of the batch sees the same failure
                self._error = error
        if self._error is not None:
            raise self._error
        assert self._groups is not None
        return self._groups[message_id]


class PromptSampler:
    """A :class:`StreamHandler` for one arm: prompt messages → rollout groups on its stream."""

    def __init__(
        self,
        generator: RolloutGenerator,
        names: StreamNames,
        *,
        arm: str,
        judge: str,
        max_staleness: int = 1,
        max_attempts: int = 3,
    ) -> None:
        if max_staleness < 0 or max_attempts < 1:
            raise ValueError("need max_staleness >= 0 and max_attempts >= 1")
        self.generator = generator
        self.arm = arm
        self.judge = judge
        self.output_stream = names.rollouts(arm)
        self.max_staleness = max_staleness
        self.max_attempts = max_attempts
        self.skipped_other_arms = 0
        self._batch: _Batch | None = None

    def parse(self, delivery: Delivery) -> tuple[str, PromptMessage]:
        message = PromptMessage.from_fields(delivery.fields)
        return message.id, message

    def submit(self, message: PromptMessage) -> Finish:
        if message.arm is not None and message.arm != self.arm:
            self.skipped_other_arms += 1
            return lambda: []
        _check_conversation(message)
        policy = self.generator.holder.current
        params = self.generator.defaults.params()
        self.generator.check_fits(policy, [_input(message)], params.max_new_tokens, "prompt")
        if self._batch is None:
            self._batch = _Batch(self)
        batch = self._batch
        batch.messages.append(message)

        def finish() -> Sequence[Output]:
            self._batch = None  # the next read starts a new batch
            return [(self.output_stream, self._group(message, batch.result(message.id)))]

        return finish

    def sample_fresh(self, messages: Sequence[PromptMessage]) -> dict[str, GroupResult]:
        """Sample every message's group with a version within ``max_staleness`` of the latest."""
        prompts = [_input(m) for m in messages]
        seconds = 0.0  # sampling time of every attempt: the stale ones delayed the batch too
        for attempt in range(1, self.max_attempts + 1):
            groups = self.generator.generate(prompts, id_prefix=f"{self.arm}:", arm=self.arm)
            seconds += groups[0].sample_s or 0.0
            version = groups[0].policy_version
            latest = self.generator.holder.latest_version()
            if latest - version <= self.max_staleness:
                return {g.prompt_id: dataclasses.replace(g, sample_s=seconds) for g in groups}
            dropped = sum(len(g.rollouts) for g in groups)
            self.generator.count_stale(dropped, self.arm)
            log.warning(
                "dropped %d rollouts of v%d: latest is v%d (max_staleness %d), attempt %d",
                dropped,
                version,
                latest,
                self.max_staleness,
                attempt,
            )
        raise StaleRollouts(
            f"the policy moved past max_staleness {self.max_attempts} times "
            "while sampling; leaving the prompts for redelivery"
        )

    def _group(self, message: PromptMessage, group: GroupResult) -> dict[bytes | str, bytes | str]:
        return RolloutGroup(
            group_id=message.id,
            arm=self.arm,
            judge=self.judge,
            prompt_id=message.id,
            prompt=message.prompt,
            reference=message.reference,
            policy_version=group.policy_version,
            rollouts=[Rollout(r.id, r.text, r.token_ids, r.logprobs) for r in group.rollouts],
            rubric=message.rubric,
            sample_s=group.sample_s,
        ).to_fields()


def _input(message: PromptMessage) -> PromptInput:
    return PromptInput(message.id, message.conversation(), message.reference)


def _check_conversation(message: PromptMessage) -> None:
    turns = message.conversation()
    if not turns or not any(t.content.strip() for t in turns):
        raise invalid("prompt", "REQUIRED", "the prompt must not be empty")
    if turns[-1].role != "user":
        raise invalid(
            f"prompt[{len(turns) - 1}].role",
            "LAST_TURN_NOT_USER",
            "the prompt must end with the user's turn",
        )
