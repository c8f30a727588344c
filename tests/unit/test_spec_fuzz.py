"""Whatever a user feeds `judgelab validate`, the answer is an Experiment or a SpecError with
one line per problem, never another exception."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from judgelab.spec import SpecError
from judgelab.spec.loader import validate_mapping, validate_text

QUICKSTART = yaml.safe_load(
    (Path(__file__).resolve().parents[2] / "examples/quickstart.yaml").read_text()
)
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-10**12, 10**12),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.text(max_size=10), inner, max_size=4)),
    max_leaves=12,
)


def _leaf_paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(node, dict):
        return [p for k, v in node.items() for p in _leaf_paths(v, (*prefix, k))] or [prefix]
    if isinstance(node, list):
        return [p for i, v in enumerate(node) for p in _leaf_paths(v, (*prefix, i))] or [prefix]
    return [prefix]


PATHS = _leaf_paths(QUICKSTART)


def _set(doc: Any, path: tuple[Any, ...], value: Any) -> None:
    for part in path[:-1]:
        doc = doc[part]
    doc[path[-1]] = value


def _one_line_per_problem(err: SpecError) -> None:
    lines = str(err).splitlines()
    assert lines and all(line.strip() for line in lines)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(PATHS), VALUES), min_size=1, max_size=3))
def test_mutated_quickstart_never_escapes_as_another_exception(
    edits: list[tuple[tuple[Any, ...], Any]],
) -> None:
    doc = copy.deepcopy(QUICKSTART)
    for path, value in edits:
        _set(doc, path, value)
    try:
        validate_mapping(doc, "fuzz.yaml")
    except SpecError as err:
        _one_line_per_problem(err)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_text_never_escapes_as_another_exception(text: str) -> None:
    try:
        validate_text(text, "fuzz.yaml")
    except SpecError as err:
        _one_line_per_problem(err)
