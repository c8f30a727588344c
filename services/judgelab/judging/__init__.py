"""Judging: prompts, protocols (pointwise, pairwise), strict parsing, agreement metrics."""

from __future__ import annotations

from judgelab.judging.config import JudgeConfig
from judgelab.judging.pairwise import Group, PairwiseJudge, position_consistency_rate
from judgelab.judging.pointwise import PointwiseJudge
from judgelab.judging.results import (
    GroupJudgement,
    PairwiseJudgement,
    PairwiseOrderJudgement,
    PointwiseJudgement,
    Stamp,
)
from judgelab.judging.samples import Pair, Sample
from judgelab.judging.scale import Scale
from judgelab.judging.templates import Template, default_template_id, load_template

__all__ = [
    "Group",
    "GroupJudgement",
    "JudgeConfig",
    "Pair",
    "PairwiseJudge",
    "PairwiseJudgement",
    "PairwiseOrderJudgement",
    "PointwiseJudge",
    "PointwiseJudgement",
    "Sample",
    "Scale",
    "Stamp",
    "Template",
    "default_template_id",
    "load_template",
    "position_consistency_rate",
]
