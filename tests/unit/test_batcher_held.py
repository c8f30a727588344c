"""MicroBatcher.held: what is submitted inside starts one batch; leaving releases it always."""

from __future__ import annotations

import pytest

from judgelab.serving.batcher import MicroBatcher


def _recording() -> tuple[MicroBatcher[int, int], list[int]]:
    sizes: list[int] = []

    def run(batch: list[int]) -> list[int]:
        sizes.append(len(batch))
        return [x * 2 for x in batch]

    return MicroBatcher("t", run, max_batch=16), sizes


def test_submits_inside_held_are_one_batch() -> None:
    batcher, sizes = _recording()
    with batcher.held():
        futures = batcher.submit([1, 2, 3]) + batcher.submit([4, 5])
        assert not any(f.done() for f in futures)
    assert [f.result(timeout=5) for f in futures] == [2, 4, 6, 8, 10]
    assert sizes == [5]
    batcher.close()


def test_an_error_inside_held_releases_the_batcher() -> None:
    batcher, sizes = _recording()
    with pytest.raises(RuntimeError), batcher.held():
        futures = batcher.submit([1])
        raise RuntimeError("a refused submit")
    assert futures[0].result(timeout=5) == 2
    assert sizes == [1]
    batcher.close()


def test_close_drains_what_a_holder_left_queued() -> None:
    batcher, _ = _recording()
    hold = batcher.held()
    hold.__enter__()
    (future,) = batcher.submit([3])
    batcher.close()  # does not wait for the holder: draining on close beats holding
    assert future.result(timeout=5) == 6
    hold.__exit__(None, None, None)
