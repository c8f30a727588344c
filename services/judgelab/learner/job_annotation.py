"""In a cluster, rank 0 of a train-policy Job writes the arm's latest numbers onto its own Job
as the ``judgelab.io/progress`` annotation (JSON: step, proxyReward, goldReward, kl, hacking);
the operator copies them into the Experiment's ``status.arms[]``. The chart gives only those pods
an API token allowed to get/patch their own Job, and names it in ``JUDGELAB_JOB_NAME``,
``JUDGELAB_JOB_NAMESPACE`` and ``JUDGELAB_PROGRESS_ANNOTATION``. A failed patch is logged, never
fatal: training matters more than the status line.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Mapping
from typing import Any

log = logging.getLogger(__name__)

Patch = Callable[[dict[str, Any]], None]


class JobAnnotator:
    """Writes progress payloads through ``patch`` (a merge patch of the Job)."""

    def __init__(self, patch: Patch, annotation: str) -> None:
        self.patch = patch
        self.annotation = annotation

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> JobAnnotator | None:
        """The annotator of the Job this pod belongs to; None outside such a Job."""
        env = os.environ if env is None else env
        name, namespace = env.get("JUDGELAB_JOB_NAME"), env.get("JUDGELAB_JOB_NAMESPACE")
        annotation = env.get("JUDGELAB_PROGRESS_ANNOTATION", "judgelab.io/progress")
        if not name or not namespace:
            return None
        from kubernetes import client, config

        config.load_incluster_config()
        jobs = client.BatchV1Api()

        def patch(body: dict[str, Any]) -> None:
            jobs.patch_namespaced_job(name, namespace, body)

        return cls(patch, annotation)

    def publish(
        self, step: int, proxy: float | None, gold: float | None, kl: float | None, hacking: bool
    ) -> None:
        payload = {
            "step": step,
            "proxyReward": _finite(proxy),
            "goldReward": _finite(gold),
            "kl": _finite(kl),
            "hacking": hacking,
        }
        body = {"metadata": {"annotations": {self.annotation: json.dumps(payload)}}}
        try:
            self.patch(body)
        except Exception as error:  # the API server being away must not stop training
            log.warning("could not annotate the Job with progress: %s", error)


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None
