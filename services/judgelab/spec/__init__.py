"""The Experiment spec: one schema for the CRD, the CLI and the chart values."""

from __future__ import annotations

from judgelab.spec.errors import Problem, SpecError
from judgelab.spec.experiment import API_VERSION, KIND, Experiment, ExperimentSpec
from judgelab.spec.loader import load_experiment, validate_mapping, validate_text
from judgelab.spec.model import ModelSpec, StrictModel

__all__ = [
    "API_VERSION",
    "KIND",
    "Experiment",
    "ExperimentSpec",
    "ModelSpec",
    "Problem",
    "SpecError",
    "StrictModel",
    "load_experiment",
    "validate_mapping",
    "validate_text",
]
