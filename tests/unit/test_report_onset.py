"""Hacking onset (proxy still rising while gold fell past a margin) and the best-gold step."""

from __future__ import annotations

import pytest

from judgelab.evaluation.report.onset import best_gold_index, hacking_onset


def test_onset_is_the_first_eval_with_rising_proxy_and_gold_past_the_margin() -> None:
    proxy = [4.0, 5.0, 6.0, 7.0, 8.0, 8.5]
    gold = [4.0, 5.0, 5.2, 5.0, 4.6, 4.0]
    # best so far 5.2; index 3 is only 0.2 below (margin 0.45); index 4 is 0.6 below.
    assert hacking_onset(proxy, gold, margin=0.45) == 4


def test_no_onset_while_gold_keeps_improving() -> None:
    assert hacking_onset([1, 2, 3, 4], [1, 2, 3, 4], margin=0.1) is None


def test_no_onset_when_proxy_also_falls() -> None:
    """Gold collapses but so does the proxy: the policy broke, it is not gaming the judge."""
    assert hacking_onset([4.0, 6.0, 5.0, 4.0], [4.0, 6.0, 4.0, 3.0], margin=0.45) is None


def test_a_flat_proxy_is_not_rising() -> None:
    assert hacking_onset([4.0, 6.0, 6.0], [4.0, 6.0, 3.0], margin=0.45) is None


def test_the_drop_is_measured_from_the_best_so_far_not_the_previous_eval() -> None:
    """Slow decline: never more than 0.3 per eval, but 0.6 below the peak by the third eval."""
    proxy = [1.0, 2.0, 3.0, 4.0, 5.0]
    gold = [5.0, 6.0, 5.7, 5.4, 5.1]
    assert hacking_onset(proxy, gold, margin=0.45) == 3


def test_a_drop_exactly_at_the_margin_is_not_onset() -> None:
    assert hacking_onset([1.0, 2.0], [5.0, 4.5], margin=0.5) is None
    assert hacking_onset([1.0, 2.0], [5.0, 4.49], margin=0.5) == 1


@pytest.mark.parametrize(("proxy", "gold"), [([], []), ([1.0], [1.0])])
def test_fewer_than_two_evals_have_no_onset(proxy: list[float], gold: list[float]) -> None:
    assert hacking_onset(proxy, gold, margin=0.0) is None


def test_bad_arguments_are_value_errors() -> None:
    with pytest.raises(ValueError, match="2 proxy values but 1 gold"):
        hacking_onset([1.0, 2.0], [1.0], margin=0.1)
    with pytest.raises(ValueError, match="margin"):
        hacking_onset([1.0], [1.0], margin=-0.1)


def test_best_gold_is_the_earliest_maximum() -> None:
    assert best_gold_index([3.0, 5.0, 4.0, 5.0]) == 1
    assert best_gold_index([]) is None
