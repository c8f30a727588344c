"""The local runtime: one study on one machine, with the same phase machine as the operator.

It starts (or uses) Redis, runs the services as child processes, drives the phase machine
through unit runners, persists the state in the run directory, and stops every child on
exit, error or signal. `judgelab run` is `run_cli(...)` with the study's runners.
"""

from __future__ import annotations

from judgelab.runtime.context import Runners, UnitContext, UnitRunner
from judgelab.runtime.errors import (
    Interrupted,
    NotARunDir,
    RedisServerMissing,
    RuntimeSetupError,
    ServiceFailed,
    SpecChangeRefused,
)
from judgelab.runtime.progress import Unit, make_progress
from judgelab.runtime.run import default_run_dir, open_run, resume, run_cli, run_experiment
from judgelab.runtime.status_view import load_status, render_status
from judgelab.runtime.store import RunStore
from judgelab.runtime.supervisor import Supervisor

__all__ = [
    "Interrupted",
    "NotARunDir",
    "RedisServerMissing",
    "RunStore",
    "Runners",
    "RuntimeSetupError",
    "ServiceFailed",
    "SpecChangeRefused",
    "Supervisor",
    "Unit",
    "UnitContext",
    "UnitRunner",
    "default_run_dir",
    "load_status",
    "make_progress",
    "open_run",
    "render_status",
    "resume",
    "run_cli",
    "run_experiment",
]
