"""Arena-Hard-style win rate against a baseline with a percentile-bootstrap confidence interval
(the shared-core implementation in ``judgelab.judging.bootstrap``)."""

from __future__ import annotations

from judgelab.judging.bootstrap import DEFAULT_RESAMPLES, WinRate, bootstrap_win_rate

__all__ = ["DEFAULT_RESAMPLES", "WinRate", "bootstrap_win_rate"]
