"""The messages that travel on the experiment's streams (see ``codec`` for the wire form).

Prompts are plain text or chat turns (:class:`~judgelab.engines.base.ChatMessage`), exactly what
:class:`judgelab.judging.Sample` takes. ``from_fields`` checks every field's type, non-empty ids
and consistent list lengths; unknown JSON keys are ignored so a field can be added without a
schema-version bump.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Self, cast, get_args

from judgelab.engines.base import ChatMessage, Role
from judgelab.queues.codec import (
    BadMessage,
    Fields,
    FieldsIn,
    Reader,
    as_bool,
    as_float,
    as_int,
    as_object,
    as_str,
    decode,
    encode,
)

Prompt = str | list[ChatMessage]
_ROLES: tuple[str, ...] = get_args(Role)

__all__ = [
    "BadMessage",
    "GoldRequest",
    "GoldResult",
    "Message",
    "Prompt",
    "PromptMessage",
    "Rollout",
    "RolloutGroup",
    "SampleMessage",
    "ScoredGroup",
]


class Message(ABC):
    """A stream message: ``to_fields()`` for XADD, ``from_fields()`` for what XREADGROUP returns."""

    KIND: ClassVar[str]

    def to_fields(self) -> Fields:
        return encode(self.KIND, self.to_json())

    @classmethod
    def from_fields(cls, fields: FieldsIn) -> Self:
        return cls.from_json(decode(cls.KIND, fields))

    def to_json(self) -> dict[str, Any]:
        """Every dataclass field by name, in declaration order (prompts and nested messages too)."""
        return {f.name: _json_value(getattr(self, f.name)) for f in fields(cast(Any, self))}

    @classmethod
    @abstractmethod
    def from_json(cls, data: Reader) -> Self: ...


def _json_value(value: Any) -> Any:
    # Lists of numbers (token ids, log-probs) go out as they are: only lists of chat turns or
    # messages need converting, and a list holds one kind of item.
    if isinstance(value, list | tuple) and value and isinstance(value[0], Message | ChatMessage):
        return [_json_value(item) for item in value]
    if isinstance(value, Message):
        return value.to_json()
    if isinstance(value, ChatMessage):
        return {"role": value.role, "content": value.content}
    return value


def _read_prompt(data: Reader, key: str = "prompt") -> Prompt:
    if isinstance(data.obj.get(key), str):
        return data.text(key)
    turns = []
    for turn in data.objects(key):
        role = turn.text("role")
        if role not in _ROLES:
            raise turn.fail("role", f"must be one of {', '.join(_ROLES)}, got {role!r}")
        turns.append(ChatMessage(cast(Role, role), turn.text("content")))
    return turns


def _opt_seconds(data: Reader, key: str) -> float | None:
    value = data.obj.get(key)
    if value is None:
        return None
    try:
        seconds = as_float(value)
    except TypeError:
        raise data.fail(key, "must be a finite number or null") from None
    if seconds < 0:
        raise data.fail(key, f"must be >= 0, got {seconds}")
    return seconds


@dataclass(frozen=True)
class PromptMessage(Message):
    """A prompt on ``jl:{experiment}:prompts`` to sample one rollout group for.

    ``id`` is the idempotency key (answered once per arm) and becomes the group id, so a
    producer that sends the same data-set prompt again (a later step or epoch) gives it a new
    id, e.g. ``f"{arm}:step{k}:{prompt_id}"``. ``arm`` None: every arm samples it; set: only
    that arm's generators do (the others acknowledge it without output).
    """

    KIND: ClassVar[str] = "prompt"

    id: str
    prompt: Prompt
    reference: str | None = None
    arm: str | None = None
    #: The gold judge's rubric for the prompt, carried like the reference (judges with
    #: ``rubric_source: gold`` need it; the others ignore it).
    rubric: str | None = None

    def conversation(self) -> list[ChatMessage]:
        if isinstance(self.prompt, str):
            return [ChatMessage("user", self.prompt)]
        return list(self.prompt)

    @classmethod
    def from_json(cls, data: Reader) -> Self:
        return cls(
            id=data.text("id", nonempty=True),
            prompt=_read_prompt(data),
            reference=data.opt_text("reference"),
            arm=data.opt_text("arm"),
            rubric=data.opt_text("rubric"),
        )


@dataclass(frozen=True)
class SampleMessage(Message):
    """One response to judge (the wire twin of ``judgelab.judging.Sample``)."""

    KIND: ClassVar[str] = "sample"

    id: str
    prompt: Prompt
    response: str
    reference: str | None = None
    rubric: str | None = None

    @classmethod
    def from_json(cls, data: Reader) -> Self:
        return cls(
            id=data.text("id", nonempty=True),
            prompt=_read_prompt(data),
            response=data.text("response"),
            reference=data.opt_text("reference"),
            rubric=data.opt_text("rubric"),
        )


@dataclass(frozen=True)
class Rollout(Message):
    """One sampled completion; ``logprobs`` (if any) are per token of ``token_ids``."""

    KIND: ClassVar[str] = "rollout"

    id: str
    text: str
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)

    @classmethod
    def from_json(cls, data: Reader) -> Self:
        rollout_id, text = data.text("id", nonempty=True), data.text("text")
        token_ids = data.array("token_ids", as_int, "an integer")
        logprobs = data.array("logprobs", as_float, "a finite number")
        if logprobs and len(logprobs) != len(token_ids):
            raise data.fail("logprobs", f"has {len(logprobs)} items for {len(token_ids)} tokens")
        return cls(rollout_id, text, token_ids, logprobs)


@dataclass(frozen=True)
class RolloutGroup(Message):
    """The rollouts of one prompt under one policy version, to be scored by the arm's judge."""

    KIND: ClassVar[str] = "rollout_group"

    group_id: str
    arm: str
    judge: str
    prompt_id: str
    prompt: Prompt
    reference: str | None
    policy_version: int
    rollouts: list[Rollout]
    rubric: str | None = None
    #: Seconds the generator spent sampling the batch this group came from (None: not timed,
    #: e.g. a message from before the field existed). The learner logs it as ``times.generate``.
    sample_s: float | None = None

    @classmethod
    def from_json(cls, data: Reader) -> Self:
        return cls(
            group_id=data.text("group_id", nonempty=True),
            arm=data.text("arm", nonempty=True),
            judge=data.text("judge", nonempty=True),
            prompt_id=data.text("prompt_id", nonempty=True),
            prompt=_read_prompt(data),
            reference=data.opt_text("reference"),
            policy_version=data.integer("policy_version", minimum=0),
            rollouts=[Rollout.from_json(r) for r in data.objects("rollouts")],
            rubric=data.opt_text("rubric"),
            sample_s=_opt_seconds(data, "sample_s"),
        )


@dataclass(frozen=True)
class ScoredGroup(Message):
    """A judged rollout group: one reward, validity flag and judge result per rollout."""

    KIND: ClassVar[str] = "scored_group"

    group_id: str
    arm: str
    judge: str
    policy_version: int
    rollout_ids: list[str]
    rewards: list[float]
    valid: list[bool]
    judgements: list[dict[str, Any]]

    def __post_init__(self) -> None:
        lengths = {len(self.rollout_ids), len(self.rewards), len(self.valid), len(self.judgements)}
        if len(lengths) != 1:
            raise ValueError(
                "rollout_ids, rewards, valid and judgements must have one item per rollout"
            )

    @classmethod
    def from_json(cls, data: Reader) -> Self:
        ids = data.array("rollout_ids", as_str, "a string")
        rewards = data.array("rewards", as_float, "a finite number")
        valid = data.array("valid", as_bool, "a boolean")
        judgements = data.array("judgements", as_object, "an object")
        for key, count in (
            ("rewards", len(rewards)),
            ("valid", len(valid)),
            ("judgements", len(judgements)),
        ):
            if count != len(ids):
                raise data.fail(key, f"has {count} items for {len(ids)} rollout_ids")
        return cls(
            group_id=data.text("group_id", nonempty=True),
            arm=data.text("arm", nonempty=True),
            judge=data.text("judge", nonempty=True),
            policy_version=data.integer("policy_version", minimum=0),
            rollout_ids=ids,
            rewards=rewards,
            valid=valid,
            judgements=judgements,
        )


@dataclass(frozen=True)
class GoldRequest(Message):
    """Samples for the gold annotator; answered by a :class:`GoldResult` with the same id."""

    KIND: ClassVar[str] = "gold_request"

    request_id: str
    samples: list[SampleMessage]

    @classmethod
    def from_json(cls, data: Reader) -> Self:
        return cls(
            request_id=data.text("request_id", nonempty=True),
            samples=[SampleMessage.from_json(s) for s in data.objects("samples")],
        )


@dataclass(frozen=True)
class GoldResult(Message):
    """The gold annotator's JSON-able annotations, one per sample of the request."""

    KIND: ClassVar[str] = "gold_result"

    request_id: str
    annotations: list[dict[str, Any]]

    @classmethod
    def from_json(cls, data: Reader) -> Self:
        return cls(
            request_id=data.text("request_id", nonempty=True),
            annotations=data.array("annotations", as_object, "an object"),
        )
