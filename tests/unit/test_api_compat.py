"""judgelab.v1 stays compatible with the released descriptors, and the checker catches each
kind of breaking change on mutated copies of them."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest
from api_support import load_script
from google.protobuf import descriptor_pb2

FileSet = descriptor_pb2.FileDescriptorSet


@pytest.fixture(scope="module")
def compat() -> ModuleType:
    return load_script("api_compat")


@pytest.fixture(scope="module")
def released(compat: ModuleType) -> FileSet:
    return compat.released()


def _file(files: FileSet, name: str) -> descriptor_pb2.FileDescriptorProto:
    return next(f for f in files.file if f.name == f"judgelab/v1/{name}.proto")


def _message(files: FileSet, file: str, name: str) -> descriptor_pb2.DescriptorProto:
    return next(m for m in _file(files, file).message_type if m.name == name)


def _field(files: FileSet, file: str, message: str, name: str) -> Any:
    return next(f for f in _message(files, file, message).field if f.name == name)


def test_current_protos_are_compatible_with_the_released_snapshot(
    compat: ModuleType, released: FileSet
) -> None:
    assert compat.breaking_changes(released, compat.current()) == []


def test_the_snapshot_holds_every_judgelab_v1_file(released: FileSet) -> None:
    names = sorted(f.name for f in released.file)
    assert names == [
        f"judgelab/v1/{n}.proto"
        for n in ("common", "gold_annotator", "judge_pool", "learner", "rollout")
    ]
    assert not any(f.source_code_info.location for f in released.file)


def _remove_field(files: FileSet) -> None:
    message = _message(files, "common", "Score")
    message.field.remove(_field(files, "common", "Score", "score_mass"))


def _reserve_removed_field(files: FileSet) -> None:
    _remove_field(files)
    message = _message(files, "common", "Score")
    message.reserved_range.add(start=6, end=7)
    message.reserved_name.append("score_mass")


def _remove_method(files: FileSet) -> None:
    service = _file(files, "judge_pool").service[0]
    service.method.remove(next(m for m in service.method if m.name == "ListJudges"))


def _remove_enum_value(files: FileSet) -> None:
    enum = next(e for e in _file(files, "common").enum_type if e.name == "Role")
    enum.value.remove(next(v for v in enum.value if v.name == "ROLE_SYSTEM"))


def _set(path: Callable[[FileSet], Any], **values: Any) -> Callable[[FileSet], None]:
    def mutate(files: FileSet) -> None:
        target = path(files)
        for key, value in values.items():
            setattr(target, key, value)

    return mutate


def _score_field(name: str) -> Callable[[FileSet], Any]:
    return lambda files: _field(files, "common", "Score", name)


def _score_rpc(files: FileSet) -> Any:
    return next(m for m in _file(files, "judge_pool").service[0].method if m.name == "Score")


BREAKING = {
    "removed field": (_remove_field, "field judgelab.v1.Score.score_mass (#6) removed"),
    "renumbered field": (
        _set(_score_field("reasoning"), number=99),
        "field judgelab.v1.Score.reasoning (#7) renumbered to #99",
    ),
    "renamed field": (_set(_score_field("reasoning"), name="rationale"), "renamed to rationale"),
    "changed type": (
        _set(_score_field("argmax_score"), type=descriptor_pb2.FieldDescriptorProto.TYPE_INT64),
        "judgelab.v1.Score.argmax_score (#4) changed type",
    ),
    "changed message type": (
        _set(_score_field("latency"), type_name=".judgelab.v1.Score"),
        "latency (#13) changed type",
    ),
    "changed label": (
        _set(_score_field("judge"), label=descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED),
        "judgelab.v1.Score.judge (#2) changed label",
    ),
    "removed message": (
        lambda files: _file(files, "judge_pool").message_type.remove(
            _message(files, "judge_pool", "JudgeStats")
        ),
        "message judgelab.v1.JudgeStats removed",
    ),
    "removed service": (
        lambda files: _file(files, "learner").ClearField("service"),
        "service judgelab.v1.Learner removed",
    ),
    "removed method": (_remove_method, "rpc judgelab.v1.JudgePool.ListJudges removed"),
    "changed request type": (
        _set(_score_rpc, input_type=".judgelab.v1.ListJudgesRequest"),
        "rpc judgelab.v1.JudgePool.Score changed its request",
    ),
    "changed streaming": (
        _set(_score_rpc, server_streaming=True),
        "rpc judgelab.v1.JudgePool.Score changed streaming",
    ),
    "removed enum value": (_remove_enum_value, "enum value judgelab.v1.Role.ROLE_SYSTEM removed"),
}


@pytest.mark.parametrize("kind", sorted(BREAKING))
def test_the_checker_catches(kind: str, compat: ModuleType, released: FileSet) -> None:
    mutate, expected = BREAKING[kind]
    changed = FileSet()
    changed.CopyFrom(released)
    mutate(changed)
    problems = compat.breaking_changes(released, changed)
    assert any(expected in problem for problem in problems), problems


def test_additions_and_reserved_removals_are_allowed(compat: ModuleType, released: FileSet) -> None:
    changed = FileSet()
    changed.CopyFrom(released)
    _reserve_removed_field(changed)
    score = _message(changed, "common", "Score")
    score.field.add(
        name="new_field",
        number=16,
        type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
        label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
    )
    _file(changed, "common").message_type.add(name="Brand_New")
    assert compat.breaking_changes(released, changed) == []


def test_script_exit_codes(compat: ModuleType, released: FileSet, tmp_path: Any) -> None:
    snapshot = tmp_path / "old.binpb"
    snapshot.write_bytes(released.SerializeToString())
    assert compat.main(["--snapshot", str(snapshot)]) == 0
    bigger = FileSet()
    bigger.CopyFrom(released)
    _message(bigger, "common", "Score").field.add(
        name="gone_now", number=50, type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING
    )
    snapshot.write_bytes(bigger.SerializeToString())
    assert compat.main(["--snapshot", str(snapshot)]) == 1
