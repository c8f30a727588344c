"""Run a unit in a child process, so that its memory goes back to the system when it ends.

`judgelab run` is one long-lived driver. Units that load models (Annotate's policy answers,
training a judge, a dpo-self-judge arm, Evaluate's final answers) used to run on its threads
and left their weights, optimizer state and allocator arenas behind: on the quickstart the
driver reached 17.8 GB by TrainPolicy. Each now runs the same runner in
``python -m judgelab.runtime.unit_main``; its progress and arm numbers come back through
`UnitFiles`, which this side polls and forwards to the driver.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from judgelab.phases.stages import SERVICES
from judgelab.runtime.context import UnitContext, UnitRunner
from judgelab.runtime.errors import UnitFailed
from judgelab.runtime.progress import Unit
from judgelab.runtime.supervisor import Child
from judgelab.runtime.unit_files import UnitFiles

POLL_S = 0.5
RUNNER_TABLE = "judgelab.runtime.runners:IN_PROCESS"


def child_runner(table: str = RUNNER_TABLE) -> UnitRunner:
    """A runner that runs each unit with the runner ``table`` (``module:attribute``) names."""

    def run(context: UnitContext, unit: Unit) -> None:
        run_in_child(context, unit, table)

    return run


def run_in_child(context: UnitContext, unit: Unit, table: str = RUNNER_TABLE) -> None:
    """Run `unit` in ``judgelab.runtime.unit_main``; raises what it failed with, or if cancelled."""
    files = UnitFiles(context.unit_dir(unit))
    files.clear()
    name = f"unit-{unit.stage.value}-{unit.name}"
    argv = [*unit_argv(context, unit), "--runners", table]
    child = context.supervisor.start(name, argv, announce=False, health=False)

    def forward() -> None:
        for message in files.new_messages():
            context.messages.put(message)

    code = watch_child(context, child, forward, f"{unit.stage.value}/{unit.name}")
    if code != 0:
        reason = files.failure() or f"exited with code {code}"
        raise UnitFailed(f"{reason} (log: {child.log_path})", child.tail())


def watch_child(context: UnitContext, child: Child, on_tick: Callable[[], None], what: str) -> int:
    """Call ``on_tick`` every POLL_S until ``child`` exits, and once after; returns its exit code.
    If the run is cancelled meanwhile the child is stopped (SIGTERM) and RuntimeError raised."""
    try:
        while True:
            code = child.process.poll()  # before on_tick: nothing the child wrote is missed
            on_tick()
            if code is not None:
                return code
            if context.cancelled.wait(POLL_S):
                context.supervisor.stop(child.name)
                raise RuntimeError(f"{what} stopped: the run was cancelled")
    finally:
        if context.supervisor.running(child.name):
            context.supervisor.stop(child.name)


def unit_argv(context: UnitContext, unit: Unit) -> list[str]:
    """The child's command line: the run, the unit, Redis and every running service's address."""
    argv = [
        sys.executable, "-m", "judgelab.runtime.unit_main", str(context.experiment_path),
        "--run-dir", str(context.run_dir), "--stage", unit.stage.value, "--unit", unit.name,
        "--attempt", str(unit.attempt), "--index", str(unit.index), "--total", str(unit.total),
        "--redis-url", context.redis_url,
    ]  # fmt: skip
    for service in SERVICES:
        if context.services.child(service) is not None:
            argv += ["--address", f"{service}={context.address(service)}"]
    return argv
