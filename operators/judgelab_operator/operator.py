"""The operator's behaviour per Experiment, independent of kopf's decorators.

Every handler of one Experiment holds the same lock (kept in kopf's per-object memo), so
the create/resume/update handlers and the reconcile timer never interleave.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import kopf

from judgelab import phases
from judgelab.phases import PhaseState
from judgelab_operator.config import OperatorConfig
from judgelab_operator.labels import (
    ANNOTATION_PREFIX,
    FINALIZER,
    RELEASE_READY,
    STATE_ANNOTATION,
)
from judgelab_operator.observations import DeploymentObservation, JobObservation
from judgelab_operator.reconcile import launch_runnable, observe
from judgelab_operator.releases import ReleaseError, ReleaseManager
from judgelab_operator.spec_input import generation, keep_data, parse_experiment
from judgelab_operator.values import chart_values, release_name, values_digest

Memo = MutableMapping[str, Any]


@dataclass
class Call:
    """What one kopf handler invocation hands over."""

    name: str
    namespace: str
    body: kopf.Body
    patch: kopf.Patch
    memo: Memo
    retry: int
    jobs: Iterable[JobObservation] = ()
    deployments: Iterable[DeploymentObservation] = ()


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


class ExperimentOperator:
    """Runs Experiments: phase machine + Helm release + status + Events."""

    def __init__(
        self,
        config: OperatorConfig,
        releases: ReleaseManager,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.config = config
        self.releases = releases
        self.clock = clock
        self.experiments: set[tuple[str, str]] = set()

    def configure(self, settings: kopf.OperatorSettings) -> None:
        """kopf settings: explicit Events only, our finalizer name, peering for HA."""
        settings.posting.level = logging.WARNING
        settings.persistence.finalizer = FINALIZER
        # With kopf's diff-base under our prefix, our own annotations (the phase state) are not
        # part of the essence kopf compares, so writing them causes no update cycle.
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix=ANNOTATION_PREFIX, key="last-handled-configuration"
        )
        settings.peering.name = self.config.peering or "judgelab"
        settings.peering.standalone = not self.config.peering
        settings.peering.mandatory = bool(self.config.peering)
        settings.peering.clusterwide = self.config.clusterwide

    def probe(self) -> dict[str, int]:
        """Liveness detail: how many Experiments this replica tracks."""
        return {"experiments": len(self.experiments)}

    async def reconcile(self, call: Call, spec_changed: bool = False) -> None:
        """Bring the study one step forward: observe, launch, sync the release, write."""
        if (call.body.get("metadata") or {}).get("deletionTimestamp"):
            return  # the finalizer owns it now; a late reconcile must not upgrade the release
        async with _lock(call.memo):
            self.experiments.add((call.namespace, call.name))
            now = self.clock()
            state, logged = self._load(call)
            if state is None or (spec_changed and not state.spec):
                state, logged = self._start(call.body, now), 0
            elif spec_changed:
                state = self._review(state, call.body, now)
            observed = observe(state, call.jobs, call.deployments, now, self.config.retry)
            launched = launch_runnable(observed, now)
            try:
                state = await self._sync_release(call, launched, now)
            except ReleaseError as err:
                state = self._release_failed(call, observed, err, now, logged)
            else:
                call.memo["release_failures"] = 0
            self._write(call, state, logged)

    async def uninstall(self, call: Call) -> None:
        """Finalizer: remove the release; volumes stay unless the Experiment opts out."""
        async with _lock(call.memo):
            if call.memo.get("uninstalled"):
                return  # kopf may run the finalizer again while its own patch is in flight
            release, keep = release_name(call.name), keep_data(call.body)
            state, _ = self._load(call)
            try:
                if not keep and state is not None and _deployed(state):
                    values = chart_values(release, state, keep)
                    await asyncio.to_thread(self.releases.upgrade, release, call.namespace, values)
                await asyncio.to_thread(self.releases.uninstall, release, call.namespace)
            except ReleaseError as err:
                if err.transient and call.retry + 1 < self.config.retry.max_attempts:
                    raise kopf.TemporaryError(str(err), delay=self._delay(call.retry)) from err
                kopf.event(call.body, type="Warning", reason="UninstallFailed", message=str(err))
                return
            finally:
                self.experiments.discard((call.namespace, call.name))
            call.memo["uninstalled"] = True
            data = "kept" if keep else "deleted"
            message = f"release {release} uninstalled; checkpoints and results {data}"
            kopf.event(call.body, type="Normal", reason="ReleaseUninstalled", message=message)

    # --- steps ---------------------------------------------------------------------------------

    def _load(self, call: Call) -> tuple[PhaseState | None, int]:
        state = call.memo.get("state")
        if isinstance(state, PhaseState):
            return state, int(call.memo.get("logged", len(state.log)))
        annotations = (call.body.get("metadata") or {}).get("annotations") or {}
        raw = annotations.get(STATE_ANNOTATION)
        if not raw:
            return None, 0
        try:
            state = PhaseState.from_dict(json.loads(raw))
        except (ValueError, KeyError, TypeError) as exc:
            raise kopf.PermanentError(f"unreadable {STATE_ANNOTATION}: {exc}") from exc
        return state, len(state.log)

    def _start(self, body: kopf.Body, now: datetime) -> PhaseState:
        experiment, problems = parse_experiment(body)
        if experiment is None:
            return phases.rejected(problems, now, generation(body))
        return phases.start(experiment.spec, now, generation(body))

    def _review(self, state: PhaseState, body: kopf.Body, now: datetime) -> PhaseState:
        experiment, problems = parse_experiment(body)
        new_generation = generation(body)
        if experiment is None:
            return phases.refuse_spec(
                state, "InvalidSpec", "; ".join(problems), new_generation, now
            )
        review = phases.review_spec(state, experiment.spec)
        if not review.accepted:
            return phases.refuse_spec(
                state, "FrozenFieldChanged", review.message(), new_generation, now
            )
        return phases.accept_spec(state, experiment.spec, new_generation, now)

    async def _sync_release(self, call: Call, state: PhaseState, now: datetime) -> PhaseState:
        if not state.spec or (state.terminal and not _deployed(state)):
            return state
        release = release_name(call.name)
        values = chart_values(release, state, keep_data(call.body))
        digest = values_digest(values)
        if call.memo.get("digest") == digest:
            return state
        if call.memo.get("digest") is not None or await self._exists(release, call.namespace):
            info = await asyncio.to_thread(self.releases.upgrade, release, call.namespace, values)
            verb = "upgraded"
        else:
            info = await asyncio.to_thread(self.releases.install, release, call.namespace, values)
            verb = "installed"
            kopf.event(
                call.body,
                type="Normal",
                reason="ReleaseInstalled",
                message=f"release {release} installed",
            )
        call.memo["digest"] = digest
        message = f"release {release} {verb} (revision {info.revision})"
        return phases.set_condition(state, RELEASE_READY, "True", "Deployed", message, now)

    async def _exists(self, release: str, namespace: str) -> bool:
        info = await asyncio.to_thread(self.releases.status, release, namespace)
        return info is not None

    def _release_failed(
        self, call: Call, state: PhaseState, err: ReleaseError, now: datetime, logged: int
    ) -> PhaseState:
        # Counted per Experiment, not per kopf handler: the create handler and the timer
        # share one budget.
        policy = self.config.retry
        failures = call.memo["release_failures"] = int(call.memo.get("release_failures", 0)) + 1
        if err.transient and policy.allows_retry(failures):
            delay = policy.delay_s(failures)
            message = f"{err}; attempt {failures + 1} of {policy.max_attempts} in {delay:g}s"
            state = phases.set_condition(state, RELEASE_READY, "False", "Retrying", message, now)
            self._write(call, state, logged)
            kopf.event(call.body, type="Warning", reason="ReleaseRetrying", message=message)
            raise kopf.TemporaryError(message, delay=delay) from err
        state = phases.fail(state, "ReleaseFailed", str(err), now)
        return phases.set_condition(state, RELEASE_READY, "False", "ReleaseFailed", str(err), now)

    def _delay(self, retry: int) -> float:
        return self.config.retry.delay_s(retry + 1)

    def _write(self, call: Call, state: PhaseState, logged: int) -> None:
        call.memo["state"], call.memo["logged"] = state, len(state.log)
        # Compared with what this replica wrote last: the body a timer sees can lag behind.
        status = phases.status_dict(state)
        current = {k: v for k, v in (call.body.get("status") or {}).items() if k != "kopf"}
        if status != call.memo.get("written_status", current):
            call.patch.status.update(status)
            call.memo["written_status"] = status
        raw = json.dumps(state.to_dict(), sort_keys=True)
        annotations = (call.body.get("metadata") or {}).get("annotations") or {}
        if raw != call.memo.get("written_state", annotations.get(STATE_ANNOTATION)):
            call.patch.metadata.annotations[STATE_ANNOTATION] = raw
            call.memo["written_state"] = raw
        for record in state.log[logged:]:
            kind = "Warning" if record.warning else "Normal"
            kopf.event(call.body, type=kind, reason=record.reason, message=record.message)


def _deployed(state: PhaseState) -> bool:
    condition = state.condition(RELEASE_READY)
    return condition is not None and condition.status == "True"


def _lock(memo: Memo) -> asyncio.Lock:
    lock = memo.get("lock")
    if not isinstance(lock, asyncio.Lock):
        lock = memo["lock"] = asyncio.Lock()
    return lock


def observations_for(
    index: Mapping[tuple[str, str], Iterable[Any]] | None, namespace: str, name: str
) -> list[Any]:
    """The index entries of one Experiment (kopf indexes are keyed by namespace and name)."""
    if index is None:
        return []
    return list(index.get((namespace, name), []))
