"""Stream messages: round trips through the wire form, and BadMessage on anything malformed."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from judgelab.engines.base import ChatMessage
from judgelab.queues.codec import SCHEMA_VERSION, BadMessage
from judgelab.queues.messages import (
    GoldRequest,
    GoldResult,
    Message,
    Rollout,
    RolloutGroup,
    SampleMessage,
    ScoredGroup,
)

CHAT = [ChatMessage("system", "Be brief."), ChatMessage("user", "Name a prime. ünï")]


def rollout_group() -> RolloutGroup:
    return RolloutGroup(
        group_id="g-1",
        arm="arm-a",
        judge="small",
        prompt_id="p-7",
        prompt=CHAT,
        reference=None,
        policy_version=3,
        rollouts=[
            Rollout("r-0", "2", token_ids=[17, 2], logprobs=[-0.5, -1.25]),
            Rollout("r-1", "four"),
        ],
    )


def scored_group() -> ScoredGroup:
    return ScoredGroup(
        group_id="g-1",
        arm="arm-a",
        judge="small",
        policy_version=3,
        rollout_ids=["r-0", "r-1"],
        rewards=[0.75, 0.0],
        valid=[True, False],
        judgements=[{"expected": 7.5, "argmax": 8}, {"invalid_reason": "unparseable"}],
    )


EXAMPLES: list[Message] = [
    SampleMessage("s-1", "What is 2+2?", "4", reference="4"),
    SampleMessage("s-2", CHAT, "7"),
    Rollout("r-0", "text", token_ids=[1, 2, 3], logprobs=[-0.1, -0.2, -0.3]),
    Rollout("r-1", ""),
    rollout_group(),
    scored_group(),
    GoldRequest("q-1", [SampleMessage("s-1", "p", "r"), SampleMessage("s-2", CHAT, "r", "ref")]),
    GoldResult("q-1", [{"score": 7, "reasoning": "fine"}, {"score": 2}]),
]


def as_redis_returns(fields: dict[bytes | str, bytes | str]) -> dict[bytes, bytes]:
    """What XREADGROUP hands back with decode_responses=False."""
    return {
        (k.encode() if isinstance(k, str) else k): (v.encode() if isinstance(v, str) else v)
        for k, v in fields.items()
    }


def fields_with(message: Message, **data_changes: object) -> dict[bytes | str, bytes | str]:
    fields = message.to_fields()
    data = json.loads(fields["data"])
    for key, value in data_changes.items():
        if value is KeyError:
            del data[key]
        else:
            data[key] = value
    fields["data"] = json.dumps(data)
    return fields


@pytest.mark.parametrize("message", EXAMPLES, ids=lambda m: type(m).__name__)
def test_round_trip_as_written_and_as_read_back(message: Message) -> None:
    fields = message.to_fields()
    assert set(fields) == {"kind", "v", "data"}
    assert fields["kind"] == message.KIND
    assert fields["v"] == str(SCHEMA_VERSION)
    assert ": " not in fields["data"] and ", " not in fields["data"]  # compact JSON
    cls = type(message)
    assert cls.from_fields(fields) == message
    assert cls.from_fields(as_redis_returns(fields)) == message


def test_chat_prompt_comes_back_as_chat_messages() -> None:
    back = RolloutGroup.from_fields(rollout_group().to_fields())
    assert isinstance(back.prompt, list)
    assert back.prompt[1] == ChatMessage("user", "Name a prime. ünï")


def test_wrong_kind_is_refused() -> None:
    with pytest.raises(BadMessage, match="field 'kind' is 'rollout', expected 'scored_group'"):
        ScoredGroup.from_fields(Rollout("r", "t").to_fields())


@pytest.mark.parametrize("missing", ["kind", "v", "data"])
def test_missing_envelope_field_is_named(missing: str) -> None:
    fields = Rollout("r", "t").to_fields()
    del fields[missing]
    with pytest.raises(BadMessage, match=f"field '{missing}' is missing"):
        Rollout.from_fields(fields)


def test_unknown_schema_version_is_refused() -> None:
    fields = Rollout("r", "t").to_fields()
    fields["v"] = "2"
    with pytest.raises(BadMessage, match="field 'v' is '2'; this build reads version 1"):
        Rollout.from_fields(fields)


@pytest.mark.parametrize(
    "data",
    [b"{not json", b'{"id": "r", "text": "t", "token_ids": [], "logprobs": [NaN]}', b"[1, 2]"],
    ids=["malformed", "nan", "not-an-object"],
)
def test_bad_json_is_refused(data: bytes) -> None:
    with pytest.raises(BadMessage, match="field 'data'"):
        Rollout.from_fields({b"kind": b"rollout", b"v": b"1", b"data": data})


def test_non_utf8_payload_is_refused() -> None:
    with pytest.raises(BadMessage, match="field 'data' is not UTF-8"):
        Rollout.from_fields({b"kind": b"rollout", b"v": b"1", b"data": b'{"id": "\xff"}'})


@pytest.mark.parametrize(
    ("message", "changes", "expected"),
    [
        (scored_group(), {"rewards": KeyError}, r"'data\.rewards' is missing"),
        (scored_group(), {"rewards": [0.5, "high"]}, r"'data\.rewards\[1\]' must be a finite"),
        (scored_group(), {"valid": [1, 0]}, r"'data\.valid\[0\]' must be a boolean, got number"),
        (scored_group(), {"policy_version": True}, r"'data\.policy_version' must be an integer"),
        (scored_group(), {"policy_version": -1}, r"'data\.policy_version' must be >= 0"),
        (scored_group(), {"judgements": [{}, 3]}, r"'data\.judgements\[1\]' must be an object"),
        (scored_group(), {"valid": [True]}, r"'data\.valid' has 1 items for 2 rollout_ids"),
        (scored_group(), {"group_id": " "}, r"'data\.group_id' must not be empty"),
        (
            rollout_group(),
            {"rollouts": [{"id": "r", "text": 5, "token_ids": [], "logprobs": []}]},
            r"'data\.rollouts\[0\]\.text'",
        ),
        (rollout_group(), {"prompt": [{"role": "robot", "content": "x"}]}, r"prompt\[0\]\.role"),
        (rollout_group(), {"prompt": 42}, r"'data\.prompt' must be a list, got number"),
        (rollout_group(), {"reference": 1}, r"'data\.reference' must be a string"),
        (rollout_group(), {"sample_s": "1s"}, r"'data\.sample_s' must be a finite number"),
        (rollout_group(), {"sample_s": -0.5}, r"'data\.sample_s' must be >= 0, got -0\.5"),
        (Rollout("r", "t", [1, 2], [-1.0, -2.0]), {"logprobs": [-1.0]}, r"1 items for 2 tokens"),
        (Rollout("r", "t"), {"token_ids": [1.5]}, r"'data\.token_ids\[0\]' must be an integer"),
        (GoldRequest("q", []), {"samples": [{"id": "s"}]}, r"'data\.samples\[0\]\.prompt'"),
        (GoldResult("q", []), {"annotations": {"a": 1}}, r"'data\.annotations' must be a list"),
    ],
)
def test_wrong_fields_are_named(
    message: Message, changes: dict[str, object], expected: str
) -> None:
    with pytest.raises(BadMessage, match=expected) as caught:
        type(message).from_fields(fields_with(message, **changes))
    assert "\n" not in str(caught.value)
    assert str(caught.value).startswith(f"{message.KIND} message: ")


def test_rollout_group_sampling_time_is_optional_on_the_wire() -> None:
    timed = RolloutGroup.from_fields(fields_with(rollout_group(), sample_s=2.5))
    assert timed.sample_s == 2.5
    old = RolloutGroup.from_fields(fields_with(rollout_group(), sample_s=KeyError))
    assert old.sample_s is None and old == rollout_group()


def test_scored_group_columns_must_line_up_when_built() -> None:
    with pytest.raises(ValueError, match="one item per rollout"):
        ScoredGroup("g", "a", "j", 0, ["r-0", "r-1"], [1.0], [True, True], [{}, {}])


def test_non_finite_reward_cannot_be_written() -> None:
    message = ScoredGroup("g", "a", "j", 0, ["r"], [float("nan")], [True], [{}])
    with pytest.raises(ValueError, match="scored_group message is not JSON-able"):
        message.to_fields()


texts = st.text(max_size=20)
ids = st.text(min_size=1, max_size=12).filter(str.strip)
rollouts = st.builds(
    Rollout,
    id=ids,
    text=texts,
    token_ids=st.lists(st.integers(0, 2**31), max_size=4),
    logprobs=st.just([]),
)
groups = st.builds(
    RolloutGroup,
    group_id=ids,
    arm=ids,
    judge=ids,
    prompt_id=ids,
    prompt=st.one_of(texts, st.lists(st.builds(ChatMessage, st.just("user"), texts), max_size=3)),
    reference=st.none() | texts,
    policy_version=st.integers(0, 10**6),
    rollouts=st.lists(rollouts, max_size=4),
    sample_s=st.none() | st.floats(0, 1e6),
)


@settings(max_examples=60, deadline=None)
@given(groups)
def test_any_rollout_group_round_trips(group: RolloutGroup) -> None:
    assert RolloutGroup.from_fields(as_redis_returns(group.to_fields())) == group


@settings(max_examples=100, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from([b"kind", b"v", b"data", b"x"]),
        st.one_of(st.binary(max_size=40), st.sampled_from([b"rollout", b"1", b"{}", b"null"])),
    )
)
def test_garbage_only_ever_raises_bad_message(fields: dict[bytes, bytes]) -> None:
    try:
        Rollout.from_fields(fields)
    except BadMessage as exc:
        assert "\n" not in str(exc)
