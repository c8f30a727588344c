"""A ReleaseManager that renders the experiment chart's essentials into the emulator.

It does what Helm would do with the operator's values, minimally: one Deployment per
service while the study is active, one Job per `jobs[]` entry, named and labelled as
charts/judgelab-experiment names and labels them (tests/unit/test_charts_operator_values.py
renders the real chart from the same values and checks it agrees); objects no longer
rendered are deleted. Calls are recorded; failures can be queued to test the operator's
retries.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from judgelab.phases import SERVICES
from judgelab_operator.labels import (
    ATTEMPT,
    COMPONENT,
    EXPERIMENT,
    SERVICE_COMPONENTS,
    STAGE,
    UNIT,
)
from judgelab_operator.releases import ReleaseError, ReleaseInfo
from judgelab_operator.values import SERVICE_KEYS

VALUE_KEY = {field.replace("_", "-"): key for field, key in SERVICE_KEYS.items()}


@dataclass(frozen=True)
class HelmCall:
    """One recorded call."""

    verb: str
    name: str
    namespace: str
    values: Mapping[str, Any] | None = None


class FakeHelm:
    """Records calls and renders Deployments and Jobs into the emulated cluster."""

    def __init__(self, server: str) -> None:
        self.server = server.rstrip("/")
        self.calls: list[HelmCall] = []
        self.failures: list[ReleaseError] = []
        self.releases: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def fail_next(self, *errors: ReleaseError) -> None:
        """The next install/upgrade calls raise these, in order."""
        self.failures.extend(errors)

    def verbs(self) -> list[str]:
        """The verbs called so far, in order."""
        return [c.verb for c in self.calls]

    def last_values(self) -> Mapping[str, Any]:
        """Values of the latest install or upgrade."""
        values = [c.values for c in self.calls if c.values is not None]
        assert values, "no install or upgrade yet"
        return values[-1]

    def install(self, name: str, namespace: str, values: Mapping[str, Any]) -> ReleaseInfo:
        return self._apply("install", name, namespace, values)

    def upgrade(self, name: str, namespace: str, values: Mapping[str, Any]) -> ReleaseInfo:
        return self._apply("upgrade", name, namespace, values)

    def uninstall(self, name: str, namespace: str) -> None:
        with self._lock:
            self.calls.append(HelmCall("uninstall", name, namespace))
            self.releases.pop((namespace, name), None)
        self._render(name, namespace, {})

    def status(self, name: str, namespace: str) -> ReleaseInfo | None:
        with self._lock:
            self.calls.append(HelmCall("status", name, namespace))
            revision = self.releases.get((namespace, name))
        return None if revision is None else ReleaseInfo(name, namespace, "deployed", revision)

    def _apply(
        self, verb: str, name: str, namespace: str, values: Mapping[str, Any]
    ) -> ReleaseInfo:
        with self._lock:
            self.calls.append(HelmCall(verb, name, namespace, json.loads(json.dumps(values))))
            if self.failures:
                raise self.failures.pop(0)
            revision = self.releases[(namespace, name)] = (
                self.releases.get((namespace, name), 0) + 1
            )
        self._render(name, namespace, self._objects(name, values))
        return ReleaseInfo(name, namespace, "deployed", revision)

    # --- rendering ---------------------------------------------------------------------------

    def _objects(self, release: str, values: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        experiment = values["experiment"]["name"]
        objects: dict[str, dict[str, Any]] = {}
        if values["active"]:
            for service in SERVICES:
                replicas = values["services"][VALUE_KEY[service]]["replicas"]
                component = SERVICE_COMPONENTS[service]
                name = f"{release}-{component}"
                labels = {EXPERIMENT: experiment, COMPONENT: component}
                objects[f"deployments/{name}"] = _object(
                    "apps/v1", "Deployment", name, labels, {"replicas": replicas}
                )
        for job in values["jobs"]:
            name = f"{release}-{job['stage']}-{job['unit']}-{job['attempt']}"
            labels = {
                EXPERIMENT: experiment,
                STAGE: job["stage"],
                UNIT: job["unit"],
                ATTEMPT: str(job["attempt"]),
            }
            objects[f"jobs/{name}"] = _object("batch/v1", "Job", name, labels, {"backoffLimit": 0})
        return objects

    def _render(self, release: str, namespace: str, wanted: dict[str, dict[str, Any]]) -> None:
        existing = self._existing(release, namespace)
        for key, body in wanted.items():
            if key not in existing:
                self._http("POST", _collection(key, namespace), body)
            elif existing[key].get("spec") != body["spec"]:
                self._http("PATCH", _item(key, namespace), {"spec": body["spec"]})
        for key in existing.keys() - wanted.keys():
            self._http("DELETE", _item(key, namespace), None)

    def _existing(self, release: str, namespace: str) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for plural in ("deployments", "jobs"):
            listing = self._http("GET", _collection(f"{plural}/x", namespace), None)
            for item in listing.get("items", []):
                name = item["metadata"]["name"]
                if name.startswith(f"{release}-"):
                    found[f"{plural}/{name}"] = item
        return found

    def _http(self, method: str, path: str, body: Any) -> Any:
        data = None if body is None else json.dumps(body).encode()
        kind = "application/merge-patch+json" if method == "PATCH" else "application/json"
        request = urllib.request.Request(
            self.server + path, data=data, method=method, headers={"Content-Type": kind}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read() or b"{}")


def _object(
    api: str, kind: str, name: str, labels: dict[str, str], spec: dict[str, Any]
) -> dict[str, Any]:
    return {
        "apiVersion": api,
        "kind": kind,
        "metadata": {"name": name, "labels": labels},
        "spec": spec,
    }


def _group(plural: str) -> str:
    return "/apis/apps/v1" if plural == "deployments" else "/apis/batch/v1"


def _collection(key: str, namespace: str) -> str:
    plural = key.split("/")[0]
    return f"{_group(plural)}/namespaces/{namespace}/{plural}"


def _item(key: str, namespace: str) -> str:
    plural, name = key.split("/")
    return f"{_group(plural)}/namespaces/{namespace}/{plural}/{name}"
