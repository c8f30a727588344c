"""The policy the generator samples from, swapped for newer published versions in place.

A swap builds a new engine around the new weights and replaces the reference in one
assignment: a batch that already took ``current`` finishes on the version it started with,
the next batch gets the new one. The base weights are kept (on the CPU) so every LoRA version
is applied to the pristine base, never on top of the previous version.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from dataclasses import dataclass

import redis

from judgelab.engines.base import Engine
from judgelab.engines.policy_store import PolicyNotFound, PolicyStore, PublishedPolicy
from judgelab.engines.transformers_engine import TransformersEngine
from judgelab.rollout.metrics import RolloutMetrics

log = logging.getLogger(__name__)
_REDIS_DOWN = (redis.ConnectionError, redis.TimeoutError)


@dataclass(frozen=True)
class ActivePolicy:
    """A loaded version and the engine that samples from it."""

    info: PublishedPolicy
    engine: Engine

    @property
    def version(self) -> int:
        return self.info.version


class PolicyHolder:
    """Holds the current policy; ``refresh`` loads the latest published version, if newer."""

    def __init__(
        self,
        engine: Engine,
        store: PolicyStore | None = None,
        *,
        base_model: str = "",
        arm: str = "",
        metrics: RolloutMetrics | None = None,
    ) -> None:
        if store is not None and not isinstance(engine, TransformersEngine):
            raise ValueError(
                "loading new policy versions needs the in-process transformers engine "
                f"(policy.model.engine: transformers); got {type(engine).__name__}"
            )
        self.store = store
        self.arm = arm
        self.metrics = metrics
        self.loads_total = 0
        self._base = _cpu_copy(engine) if store is not None else None
        self._current = ActivePolicy(PublishedPolicy.base(base_model), engine)
        self._refresh_lock = threading.Lock()
        if metrics is not None:
            metrics.policy_version.labels(**metrics.labels(arm)).set(0)

    @property
    def current(self) -> ActivePolicy:
        return self._current

    def latest_version(self) -> int:
        """The newest published version (the loaded one when nothing is published)."""
        if self.store is None:
            return self._current.version
        try:
            return max(self.store.latest_version(), 0)
        except _REDIS_DOWN as error:  # the learner checks staleness again on its side
            log.warning("latest policy version unknown (Redis down: %s); using v%d",
                        error, self._current.version)  # fmt: skip
            return self._current.version

    def refresh(self) -> ActivePolicy:
        """Load the latest published version if it is newer than the loaded one; the current.

        A version announced but not readable yet (a shared volume behind Redis) is retried on
        the next call; the loaded version stays in use meanwhile.
        """
        if self.store is None:
            return self._current
        with self._refresh_lock:
            try:
                latest = self.store.latest_version()
            except _REDIS_DOWN as error:
                log.warning("kept policy v%d: Redis down (%s)", self._current.version, error)
                return self._current
            if latest <= self._current.version:
                return self._current
            try:
                self._load(latest)
            except PolicyNotFound as error:
                log.warning("policy v%d announced but not loadable yet: %s", latest, error)
            return self._current

    def close(self) -> None:
        self._current.engine.close()

    def _load(self, version: int) -> None:
        assert self.store is not None and self._base is not None
        old = self._current.engine
        assert isinstance(old, TransformersEngine)
        started = time.perf_counter()
        info, model = self.store.load(version, self._base)
        engine = old.sibling(model)
        self._current = ActivePolicy(info, engine)
        self.loads_total += 1
        seconds = time.perf_counter() - started
        if self.metrics is not None:
            self.metrics.record_load(self.arm, version, seconds)
        log.info("loaded policy v%d (%s) in %.2f s", version, info.kind, seconds)


def _cpu_copy(engine: Engine) -> object:
    assert isinstance(engine, TransformersEngine)
    return copy.deepcopy(engine.model).to("cpu")
