"""Gold annotation priorities by name."""

from __future__ import annotations

from judgelab.api.v1 import gold_annotator_pb2

PRIORITIES = {
    "low": gold_annotator_pb2.PRIORITY_LOW,
    "normal": gold_annotator_pb2.PRIORITY_NORMAL,
    "high": gold_annotator_pb2.PRIORITY_HIGH,
}


def priority_to_proto(name: str) -> gold_annotator_pb2.Priority:
    try:
        return PRIORITIES[name]
    except KeyError:
        raise ValueError(f"priority must be one of {', '.join(PRIORITIES)}, got {name!r}") from None
