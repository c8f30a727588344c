"""`run_experiment`: one study from an experiment file (or a run directory) to its end.

`judgelab run` calls `run_cli`, which turns the runtime's errors into a message and an exit
code: 0 done, 1 the study failed, 2 it could not start, 128 + N stopped by signal N.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any, TextIO

from judgelab import phases
from judgelab.phases import PhaseState, RetryPolicy
from judgelab.runtime.context import Runners, UnitContext
from judgelab.runtime.driver import Driver, utc_now
from judgelab.runtime.errors import (
    Interrupted,
    RuntimeSetupError,
    ServiceFailed,
    SpecChangeRefused,
)
from judgelab.runtime.lock import run_lock
from judgelab.runtime.progress import ProgressView, make_progress
from judgelab.runtime.redis_local import check_redis, configured_redis_url, start_local_redis
from judgelab.runtime.services import ArgvFor, LocalServices
from judgelab.runtime.signals import signals_interrupt
from judgelab.runtime.store import RunStore
from judgelab.runtime.supervisor import Supervisor
from judgelab.spec import Experiment, SpecError, load_experiment


def default_run_dir(experiment: Experiment) -> Path:
    """spec.runtime.run_dir / metadata.name (e.g. runs/quickstart)."""
    return Path(experiment.spec.runtime.run_dir) / experiment.metadata.name


def run_experiment(
    experiment_path: Path | None,
    run_dir: Path,
    runners: Runners,
    resume: bool = False,
    *,
    retry_policy: RetryPolicy | None = None,
    progress: ProgressView | None = None,
    grace_s: float = 15.0,
    service_argv: ArgvFor | None = None,
) -> PhaseState:
    """Run (or with `resume`, continue) the study; returns the final phase state.

    With `resume`, `experiment_path` may be None (the run's own copy is used); a changed
    experiment is taken only where the phase machine allows it, else SpecChangeRefused.
    """
    if resume and not RunStore(run_dir).exists():
        RunStore(run_dir).load()  # NotARunDir, before the lock creates the directory
    with ExitStack() as stack:
        stack.enter_context(run_lock(run_dir))
        store = RunStore(run_dir)
        experiment, state = open_run(
            store, experiment_path, resume, check=lambda loaded: _check_runners(loaded, runners)
        )
        if state.terminal:
            return state
        view = progress if progress is not None else make_progress()
        stack.enter_context(signals_interrupt())
        supervisor = stack.enter_context(Supervisor(store.logs_dir, grace_s=grace_s))
        driver: Driver | None = None
        try:
            redis_url = _redis(experiment, supervisor, store, view)
            services = LocalServices(
                supervisor,
                store.experiment_path,
                redis_url,
                on_event=view.event,
                argv_for=service_argv,
            )
            context = UnitContext(
                experiment, store.experiment_path, run_dir, redis_url, services, supervisor
            )
            policy = retry_policy if retry_policy is not None else RetryPolicy()
            driver = Driver(store, state, context, runners, view, policy)
            return driver.run()
        except BaseException:
            if driver is not None:
                driver.interrupted()
            raise
        finally:
            view.event("stopping services")
            view.close()


def run_cli(
    experiment_path: Path | None,
    run_dir: Path,
    runners: Runners,
    resume: bool = False,
    err: TextIO | None = None,
    **options: Any,
) -> int:
    """`run_experiment` for a command line: one message instead of a traceback, an exit code.

    `options` go to `run_experiment` (retry_policy, progress, grace_s, service_argv)."""
    out = err if err is not None else sys.stderr
    try:
        state = run_experiment(experiment_path, run_dir, runners, resume, **options)
    except RuntimeSetupError as error:
        out.write(f"judgelab: {error}\n")
        return error.exit_code
    except ServiceFailed as error:
        out.write(f"judgelab: {error}\nresume with: judgelab run --resume {run_dir}\n")
        return 1
    except KeyboardInterrupt:  # Ctrl-C before the runtime's own handler was in place
        out.write("judgelab: interrupted\n")
        return 128 + signal.SIGINT
    except Interrupted as error:
        out.write(
            f"judgelab: stopped by signal {error.signum}; "
            f"resume with: judgelab run --resume {run_dir}\n"
        )
        return 128 + error.signum
    if state.phase == "Failed":
        out.write(f"judgelab: the study failed: {state.message}\n")
        return 1
    out.write(f"judgelab: {state.message} (run directory: {run_dir})\n")
    return 0


def resume(run_dir: Path, experiment_path: Path | None = None) -> tuple[Experiment, PhaseState]:
    """Load a run to continue it: interrupted units pending again, spec changes reviewed."""
    return open_run(RunStore(run_dir), experiment_path, resume=True)


def open_run(
    store: RunStore,
    experiment_path: Path | None,
    resume: bool,
    check: Callable[[PhaseState], None] = lambda _: None,
) -> tuple[Experiment, PhaseState]:
    """Start a new run's state, or load and review a run to resume; `check` runs before the
    state is saved."""
    now = utc_now()
    if not resume:
        if store.exists():
            raise RuntimeSetupError(
                f"{store.run_dir} already holds a run: continue it with --resume, "
                "or choose another run directory"
            )
        if experiment_path is None:
            raise RuntimeSetupError("give the experiment file to run")
        experiment = _load(experiment_path)
        state = phases.start(experiment.spec, now)
        check(state)
        store.keep_experiment(experiment_path)
        store.save(state)
        return experiment, state
    state = store.load()
    store.sync_log(state)
    source = experiment_path if experiment_path is not None else store.experiment_path
    experiment = _load(source)
    review = phases.review_spec(state, experiment.spec)
    if not review.accepted:
        raise SpecChangeRefused(f"{source} differs from the run's experiment: {review.message()}")
    if review.changed:
        state = phases.accept_spec(state, experiment.spec, state.generation, now)
        store.keep_experiment(source)
    if state.phase == "Failed":
        raise RuntimeSetupError(
            f"the run in {store.run_dir} failed ({state.message}); a failed run cannot be "
            "resumed: start a new run directory"
        )
    state = phases.interrupt(state, now)
    for service in state.services:
        state = phases.set_service(state, service, False, now)
    if not state.terminal:
        check(state)
    store.save(state)
    return experiment, state


def _load(path: Path) -> Experiment:
    try:
        return load_experiment(path)
    except SpecError as err:
        raise RuntimeSetupError(str(err)) from err


def _check_runners(state: PhaseState, runners: Runners) -> None:
    missing = [
        stage.value
        for stage, units in state.units.items()
        if stage not in runners and any(u.status != "succeeded" for u in units.values())
    ]
    if missing:
        raise RuntimeSetupError(f"no unit runner for stage(s): {', '.join(missing)}")


def _redis(
    experiment: Experiment, supervisor: Supervisor, store: RunStore, view: ProgressView
) -> str:
    url = configured_redis_url(experiment.spec.runtime.redis_url)
    if url is not None:
        check_redis(url)
        view.event(f"using Redis at {url}")
        return url
    url = start_local_redis(supervisor, store.redis_dir)
    view.event(f"started redis-server at {url} (data: {store.redis_dir})")
    return url
