"""The study report: ``build_report(run_dir)`` turns a run directory's recorded data into
``report.md``, a self-contained ``report.html``, ``report/*.png`` and ``results.json``.

Inputs (paths relative to the run directory; every one optional — a missing one gives a
"Not recorded" section; a malformed one raises ``ReportInputError`` naming ``file:line``).
Numbers may be ``null``; ``NaN``/``Infinity`` are read as ``null`` (a gap, not an error).
Unknown keys are ignored.

``arms/{arm}/steps.jsonl`` — one JSON object per learner step (:class:`StepRecord`)::

    {"step": 12,                       # int >= 0, unique in the file (required)
     "proxy_reward_mean": 6.1,         # mean proxy-judge reward of the step's rollouts (required)
     "kl": 0.034,                      # estimate of KL(π‖π_init) in nats, >= 0 (required)
     "proxy_reward_std": 1.2, "entropy": 0.9, "completion_length_mean": 143.0,
     "clip_fraction": 0.02,            # optional
     "eval": {                         # optional: only on gold-evaluation steps
        "gold_reward_mean": 5.2,       # required in eval
        "proxy_reward_mean": 6.3,      # required in eval: the proxy judge on the same samples
        "samples": [{"prompt": "...", "response": "...", "gold": 5.0, "proxy": 7.0}]}}

Evaluate at step 0 (KL = 0): the Gao fit then uses that gold score as R(0).

``judges.json`` (:class:`JudgesFile`)::

    {"scale": {"min": 0, "max": 9},    # optional: the gold score scale (default 0–9)
     "judges": [{"name": "small-reasoning", "protocol": "pointwise",   # or "pairwise"
                 "reasoning": true,
                 "agreement": {"alpha_interval": 0.61, "alpha_ordinal": 0.63, "pearson": 0.66,
                               "spearman": 0.64, "accuracy": null},
                 "invalid_rate": 0.02, "reasoning_tokens_mean": 212.0,
                 "seconds_per_judgement": 0.41, "tokens_per_judgement": 260.0}]}

``evaluate/cross_scores.json`` (:class:`CrossScores`): ``{"scores": {scorer: {arm: mean}}}``,
scorers are the judge names and ``"gold"``.

``evaluate/pairwise.json`` (:class:`PairwiseFile`)::

    {"baseline": "initial policy", "judge": "gold",
     "arms": {arm: ["win", "tie", "loss", 0.75, ...]}}   # one per prompt; a number = P(win)

``evaluate/outputs/{arm}.jsonl`` (:class:`OutputRecord`): one line per output,
``{"prompt": "...", "response": "...", "stage": "start" | "end"}``.

Arm names are the directory / file stems; an arm named like a judge is that judge's arm.
"""

from __future__ import annotations

from judgelab.evaluation.report.build import ReportResult, build_report
from judgelab.evaluation.report.errors import ReportInputError
from judgelab.evaluation.report.options import ReportOptions

__all__ = ["ReportInputError", "ReportOptions", "ReportResult", "build_report"]
