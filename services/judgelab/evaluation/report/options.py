"""Knobs of the report, with the defaults the study uses."""

from __future__ import annotations

from dataclasses import dataclass

from judgelab.evaluation.report.bootstrap import DEFAULT_RESAMPLES
from judgelab.evaluation.report.onset import DEFAULT_MARGIN_FRACTION

#: The gold judge's default score scale (DESIGN.md: 0–9) when judges.json records none.
DEFAULT_SCALE = (0.0, 9.0)


@dataclass(frozen=True)
class ReportOptions:
    scale: tuple[float, float] | None = None  # None: judges.json's scale, else DEFAULT_SCALE
    onset_margin_fraction: float = DEFAULT_MARGIN_FRACTION
    bootstrap_resamples: int = DEFAULT_RESAMPLES
    bootstrap_seed: int = 0
    confidence: float = 0.95
    samples_per_arm: int = 3
    sample_chars: int = 600  # longer sample outputs are cut in the report (not in the data)

    def __post_init__(self) -> None:
        if not 0.0 <= self.onset_margin_fraction < 1.0:
            fraction = self.onset_margin_fraction
            raise ValueError(f"onset_margin_fraction must be in [0, 1): {fraction}")
        if self.bootstrap_resamples < 1 or self.samples_per_arm < 0 or self.sample_chars < 1:
            raise ValueError("bootstrap_resamples, sample_chars >= 1 and samples_per_arm >= 0")
        if self.scale is not None and not self.scale[0] < self.scale[1]:
            raise ValueError(f"scale needs min < max, got {self.scale}")
