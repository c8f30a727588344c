"""Helpers of the operator tests: the emulated cluster as users and kubelets see it."""

from __future__ import annotations

import asyncio
import copy
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import kopf
import yaml
from fake_helm import FakeHelm
from kube_emulator import EXPERIMENTS, ApiServer

from judgelab_operator.labels import SERVICE_COMPONENTS
from judgelab_operator.operator import ExperimentOperator

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "studies"
TIMEOUT_S = 10.0


def quickstart(name: str = "quickstart") -> dict[str, Any]:
    """The quickstart Experiment, renamed, in the test namespace."""
    raw: dict[str, Any] = yaml.safe_load((ROOT / "examples/quickstart.yaml").read_text("utf-8"))
    raw["metadata"] = {"name": name, "namespace": NAMESPACE}
    return copy.deepcopy(raw)


async def eventually(check: Callable[[], Any], what: str, timeout: float = TIMEOUT_S) -> Any:
    """Wait until `check()` returns something truthy (and return it)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = check()
        if result:
            return result
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for: {what}")
        await asyncio.sleep(0.01)


@dataclass
class Cluster:
    """The emulated API server, the fake Helm, and a client to act as users and kubelets."""

    api: ApiServer
    helm: FakeHelm
    http: aiohttp.ClientSession
    operator: ExperimentOperator
    liveness: str

    def experiment(self, name: str) -> dict[str, Any] | None:
        return self.objects(EXPERIMENTS).get(name)

    def status(self, name: str) -> dict[str, Any]:
        return (self.experiment(name) or {}).get("status") or {}

    def condition(self, name: str, type_: str) -> dict[str, Any]:
        found = [c for c in self.status(name).get("conditions", []) if c["type"] == type_]
        return found[0] if found else {}

    def objects(self, plural: str) -> dict[str, dict[str, Any]]:
        """Live objects of `batch/v1/jobs`, `apps/v1/deployments` or `v1/events` by name."""
        return {
            name: _plain(obj.raw)
            for (resource, _, name), obj in self.api.objects.items()
            if f"{resource.group}/{resource.version}/{resource.plural}".lstrip("/") == plural
            and not obj.deleted
        }

    def job(self, name: str, stage: str, unit: str, attempt: int = 1) -> str | None:
        job = f"{name}-{stage}-{unit}-{attempt}"
        return job if job in self.objects("batch/v1/jobs") else None

    def events(self, name: str) -> list[dict[str, Any]]:
        return [
            e
            for e in self.objects("v1/events").values()
            if e.get("involvedObject", {}).get("name") == name
        ]

    def reasons(self, name: str, kind: str | None = None) -> list[str]:
        """Reasons of the Events about `name` (of one type if given), oldest first."""
        events = sorted(self.events(name), key=lambda e: int(e["metadata"]["resourceVersion"]))
        return [e["reason"] for e in events if kind is None or e["type"] == kind]

    async def request(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        kind = "application/merge-patch+json" if method == "PATCH" else "application/json"
        async with self.http.request(
            method, path, json=body, headers={"Content-Type": kind}
        ) as response:
            payload: dict[str, Any] = await response.json(content_type=None)
            payload["_code"] = response.status
            return payload

    async def create(self, body: dict[str, Any]) -> dict[str, Any]:
        path = f"/apis/{EXPERIMENTS.rsplit('/', 1)[0]}/namespaces/{NAMESPACE}/experiments"
        return await self.request("POST", path, body)

    async def patch_experiment(self, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        path = f"/apis/{EXPERIMENTS.rsplit('/', 1)[0]}/namespaces/{NAMESPACE}/experiments/{name}"
        return await self.request("PATCH", path, patch)

    async def delete(self, name: str) -> dict[str, Any]:
        path = f"/apis/{EXPERIMENTS.rsplit('/', 1)[0]}/namespaces/{NAMESPACE}/experiments/{name}"
        return await self.request("DELETE", path)

    async def set_ready(self, release: str, service: str, ready: bool = True) -> None:
        """What the Deployment controller reports once the pods are ready."""
        name = f"{release}-{SERVICE_COMPONENTS[service]}"
        deployment = await eventually(lambda: self.objects("apps/v1/deployments").get(name), name)
        replicas = deployment["spec"]["replicas"] if ready else 0
        path = f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{name}/status"
        await self.request("PATCH", path, {"status": {"readyReplicas": replicas}})

    async def finish_job(self, job: str, failed: bool = False, **annotations: str) -> None:
        """What the Job controller reports when the pods succeed or run out of retries."""
        base = f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs/{job}"
        if annotations:
            await self.request("PATCH", base, {"metadata": {"annotations": annotations}})
        condition = {"type": "Complete", "status": "True"}
        if failed:
            condition = {
                "type": "Failed",
                "status": "True",
                "reason": "BackoffLimitExceeded",
                "message": "Job has reached the specified backoff limit",
            }
        await self.request("PATCH", base + "/status", {"status": {"conditions": [condition]}})


def _plain(value: Any) -> Any:
    if isinstance(value, dict) or hasattr(value, "items"):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class OperatorThread(threading.Thread):
    """`kopf.operator(...)` in a thread of its own; `stop()` re-raises what it died of."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(name="kopf-operator", daemon=True)
        self.kwargs = kwargs
        self.stop_flag, self.ready_flag = threading.Event(), threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            asyncio.run(
                kopf.operator(stop_flag=self.stop_flag, ready_flag=self.ready_flag, **self.kwargs)
            )
        except BaseException as exc:  # reported to the test by stop()
            self.error = exc

    def wait_ready(self) -> None:
        if not self.ready_flag.wait(TIMEOUT_S):
            raise AssertionError(f"the operator did not get ready: {self.error!r}")

    def stop(self) -> None:
        self.stop_flag.set()
        self.join(TIMEOUT_S)
        assert not self.is_alive(), "the operator did not stop"
        if self.error is not None:
            raise self.error
