"""The TrainPolicy prompt feeder on a real redis-server: steps pushed ahead of the learner, one
replacement per group the learner dropped, each pushed exactly once even across a rerun."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from judgelab.learner.feeder import PromptFeeder
from judgelab.queues import StreamNames, connect
from judgelab.queues.messages import PromptMessage
from judgelab.runtime.train_policy import read_dropped
from judgelab.spec.policy import GrpoAlgorithm

NAMES = StreamNames("demo")
ARM = "arm-a"
PROMPTS = [
    {"id": f"p{k}", "prompt": f"Question {k}?", "reference": f"answer {k}"} for k in range(3)
]
ALGORITHM = GrpoAlgorithm(name="grpo", steps=4, prompts_per_step=2, max_staleness=0)


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    connection = connect(redis_url)
    yield connection
    connection.close()


def feeder(client: redis.Redis, marker: Path) -> PromptFeeder:
    return PromptFeeder(client, NAMES, ARM, PROMPTS, ALGORITHM, marker)


def on_stream(client: redis.Redis) -> list[PromptMessage]:
    return [PromptMessage.from_fields(fields) for _, fields in client.xrange(NAMES.prompts)]


def test_a_dropped_group_is_replaced_once_even_by_a_new_feeder(
    client: redis.Redis, tmp_path: Path
) -> None:
    marker = tmp_path / "pushed.json"
    feeder(client, marker).feed(0)  # max_staleness 0: one step ahead
    assert [m.id for m in on_stream(client)] == [f"{ARM}:step1:p0", f"{ARM}:step1:p1"]

    dropped = [f"{ARM}:step1:p1"]
    first = feeder(client, marker)
    first.feed(0, dropped)
    first.feed(0, dropped)  # the same progress again: nothing new
    feeder(client, marker).feed(0, dropped)  # a rerun of the unit: nothing new either
    messages = on_stream(client)
    assert [m.id for m in messages] == [
        f"{ARM}:step1:p0",
        f"{ARM}:step1:p1",
        f"{ARM}:step1:p1:retry1",
    ]
    original, replacement = messages[1], messages[2]
    assert (replacement.prompt, replacement.reference, replacement.arm) == (
        original.prompt,
        original.reference,
        ARM,
    )
    assert json.loads(marker.read_text()) == {"pushed_steps": 1, "replaced": dropped}

    # The replacement was dropped too, and step 1 is done: retry2, then step 2's prompts.
    feeder(client, marker).feed(1, [*dropped, f"{ARM}:step1:p1:retry1"])
    assert [m.id for m in on_stream(client)[3:]] == [
        f"{ARM}:step1:p1:retry2",
        f"{ARM}:step2:p2",
        f"{ARM}:step2:p0",
    ]
    assert json.loads(marker.read_text()) == {
        "pushed_steps": 2,
        "replaced": [*dropped, f"{ARM}:step1:p1:retry1"],
    }


def test_an_old_marker_without_replacements_still_reads(
    client: redis.Redis, tmp_path: Path
) -> None:
    marker = tmp_path / "pushed.json"
    marker.write_text(json.dumps({"pushed_steps": 1}))
    fed = feeder(client, marker)
    assert fed.pushed == 1 and fed.replaced == []
    fed.feed(1, [f"{ARM}:step1:p0"])
    assert [m.id for m in on_stream(client)] == [
        f"{ARM}:step1:p0:retry1",
        f"{ARM}:step2:p2",
        f"{ARM}:step2:p0",
    ]


def test_a_drop_of_a_prompt_it_never_pushed_is_an_error(
    client: redis.Redis, tmp_path: Path
) -> None:
    with pytest.raises(RuntimeError, match="'other:step1:p0', which is no prompt"):
        feeder(client, tmp_path / "pushed.json").feed(0, ["other:step1:p0"])
    assert on_stream(client) == []


def test_read_dropped_follows_the_learners_progress_file(tmp_path: Path) -> None:
    assert read_dropped(tmp_path) == []
    (tmp_path / "progress.json").write_text(json.dumps({"step": 2, "dropped": ["a", "b"]}))
    assert read_dropped(tmp_path) == ["a", "b"]
    (tmp_path / "progress.json").write_text(json.dumps({"step": 2}))  # an older learner
    assert read_dropped(tmp_path) == []
