"""The loop: ask the phase machine what may run, bring up its services, run it, record the result.

Units run one at a time (the machine the local runtime targets has few cores); each runs on
a worker thread so that signals and service crashes are noticed while it works.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

from judgelab import phases
from judgelab.phases import ArmProgress, PhaseState, RetryPolicy, Stage
from judgelab.phases.stages import stage_services
from judgelab.runtime.context import Message, Runners, StepReport, UnitContext
from judgelab.runtime.errors import UnitFailed
from judgelab.runtime.progress import ProgressView, Unit
from judgelab.runtime.store import RunStore

POLL_S = 0.2


def utc_now() -> datetime:
    return datetime.now(UTC)


class Driver:
    """Drives one run to Succeeded or Failed; `state` is always what was last saved."""

    def __init__(
        self,
        store: RunStore,
        state: PhaseState,
        context: UnitContext,
        runners: Runners,
        progress: ProgressView,
        policy: RetryPolicy,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.store = store
        self.state = state
        self.context = context
        self.runners = runners
        self.progress = progress
        self.policy = policy
        self.clock = clock
        self._shown: Stage | None = None
        self._unit_cancelled: threading.Event | None = None

    def run(self) -> PhaseState:
        while not self.state.terminal:
            self._take_crashes()
            stage = self.state.current
            if stage is None:
                break
            self._show_stage(stage)
            self._ensure_services(stage)
            units = phases.runnable(self.state, self.clock())
            if units:
                self._run_unit(*units[0])
                continue
            self._wait_for_retry()
        self.progress.event(f"{self.state.phase}: {self.state.message}")
        return self.state

    def interrupted(self) -> None:
        """The run stops early: running units go back to pending, services to not ready."""
        self.context.cancelled.set()
        if self._unit_cancelled is not None:
            self._unit_cancelled.set()
        state = phases.interrupt(self.state, self.clock())
        for service in state.services:
            state = phases.set_service(state, service, False, self.clock())
        self._commit(state)

    def _commit(self, state: PhaseState) -> None:
        if state is not self.state:
            self.store.save(state)
            self.state = state

    def _show_stage(self, stage: Stage) -> None:
        if stage is self._shown:
            return
        self._shown = stage
        units = self.state.units[stage]
        done = sum(1 for u in units.values() if u.status == "succeeded")
        self.progress.stage_started(stage, len(units), done)

    def _ensure_services(self, stage: Stage) -> None:
        needed = stage_services(self.state.spec, stage)
        self.context.services.ensure(needed)
        state = self.state
        for service in needed:
            state = phases.set_service(state, service, True, self.clock())
        self._commit(state)

    def _take_crashes(self) -> list[str]:
        lost = self.context.services.crashed()
        state = self.state
        for service in lost:
            state = phases.set_service(state, service, False, self.clock())
        self._commit(state)
        return lost

    def _wait_for_retry(self) -> None:
        retry_at = phases.next_retry(self.state)
        if retry_at is None:
            raise RuntimeError(f"the phase machine has nothing to run: {self.state.message}")
        left = (retry_at - self.clock()).total_seconds()
        time.sleep(min(max(left, 0.0), POLL_S))

    def _run_unit(self, stage: Stage, name: str) -> None:
        self._commit(phases.launch(self.state, stage, name, self.clock()))
        names = list(self.state.units[stage])
        attempt = self.state.unit(stage, name).attempts
        unit = Unit(stage, name, attempt, names.index(name) + 1, len(names))
        self.progress.unit_started(unit)
        began = time.monotonic()
        error = self._call(unit)
        if error is None:
            self._commit(phases.succeed(self.state, stage, name, self.clock()))
            self.progress.unit_succeeded(unit, time.monotonic() - began)
            return
        self._commit(phases.fail_unit(self.state, stage, name, error, self.clock(), self.policy))
        after = self.state.unit(stage, name)
        retry_in = self.policy.delay_s(after.failures) if after.status == "retrying" else None
        self.progress.unit_failed(unit, error, retry_in)

    def _call(self, unit: Unit) -> str | None:
        """Run the unit's runner on a thread; None on success, else the error in one line."""
        context = replace(self.context, messages=queue.Queue(), cancelled=threading.Event())
        outcome: list[BaseException | None] = []

        def target() -> None:
            try:
                self.runners[unit.stage](context, unit)
            except BaseException as err:  # the runner's failure is the unit's, whatever it is
                outcome.append(err)
            else:
                outcome.append(None)

        thread = threading.Thread(target=target, name=f"unit-{unit.stage}-{unit.name}", daemon=True)
        self._unit_cancelled = context.cancelled
        thread.start()
        while thread.is_alive():
            thread.join(POLL_S)
            self._drain(context, unit)
            lost = self._take_crashes()
            if any(s in stage_services(self.state.spec, unit.stage) for s in lost):
                context.cancelled.set()
        self._unit_cancelled = None
        self._drain(context, unit)
        error = outcome[0] if outcome else RuntimeError("the runner ended without a result")
        if error is None:
            return None
        text = str(error).strip().splitlines()[0] if str(error).strip() else ""
        if isinstance(error, UnitFailed):  # its text already names the child's error
            return text
        return f"{type(error).__name__}: {text}" if text else type(error).__name__

    def _drain(self, context: UnitContext, unit: Unit) -> None:
        while True:
            try:
                message: Message = context.messages.get_nowait()
            except queue.Empty:
                return
            if isinstance(message, StepReport):
                self.progress.unit_progress(unit, message.done, message.total, message.note)
            elif isinstance(message, ArmProgress):
                self._commit(phases.update_arm(self.state, message))
