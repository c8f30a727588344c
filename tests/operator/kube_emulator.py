"""kmock's Kubernetes emulator, taught what the operator relies on from a real API server.

kmock keeps objects and streams watch events; on top, like the API server does, this sets
uid/resourceVersion/generation/creationTimestamp, bumps generation on spec changes, names
`generateName` objects (kopf's Events), answers a failed JSON-patch `test` with 422 (kopf's
optimistic concurrency), does not replay a watch from a given resourceVersion, and rejects
(422) every Experiment write that breaks the CRD's openAPIV3Schema, using the strict
validator of tests/unit/test_crd.py.
"""

from __future__ import annotations

import copy
import datetime
import itertools
import uuid
from collections.abc import AsyncIterator
from typing import Any

import attrs
import jsonpatch
import kmock
from kmock._internal import enums, rendering
from unit.test_crd import _violations

from judgelab.crd import GROUP, PLURAL, VERSION, openapi_schema

EXPERIMENTS = f"{GROUP}/{VERSION}/{PLURAL}"
RESOURCES = {
    EXPERIMENTS: ("Experiment", True, {"status"}),
    "batch/v1/jobs": ("Job", True, {"status"}),
    "apps/v1/deployments": ("Deployment", True, {"status"}),
    "v1/events": ("Event", True, set()),
    "v1/namespaces": ("Namespace", False, set()),
    "apiextensions.k8s.io/v1/customresourcedefinitions": ("CustomResourceDefinition", False, set()),
    "kopf.dev/v1/kopfpeerings": ("KopfPeering", True, set()),
}
VERBS = {"list", "watch", "get", "create", "patch", "delete"}


def merge_patch(value: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(value) if isinstance(value, dict) else {}
    for key, item in patch.items():
        if item is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), item)
    return out


@attrs.define(kw_only=True)
class ApiServer(kmock.KubernetesEmulator):
    """A kmock emulator with the API-server behaviour listed in the module docstring."""

    _versions: Any = attrs.field(factory=lambda: itertools.count(1), init=False)
    _last: int = attrs.field(default=0, init=False)

    def declare(self) -> None:
        """Serve discovery for every resource the operator and the tests touch."""
        for name, (kind, namespaced, subresources) in RESOURCES.items():
            self.resources[name] = kmock.ResourceInfo(
                kind=kind, namespaced=namespaced, verbs=VERBS, subresources=subresources
            )

    async def _handle(self, request: rendering.Request) -> Any:
        if request.resource is not None and isinstance(request.data, dict | list):
            if request.action == enums.action.CREATE and isinstance(request.data, dict):
                self._admit_create(request)
            elif request.action == enums.action.UPDATE and request.name is not None:
                self._admit_update(request)
        return await super()._handle(request)

    async def _serve_list(self, request: rendering.Request) -> Any:
        result = await super()._serve_list(request)
        result["metadata"]["resourceVersion"] = str(self._last)
        return result

    async def _serve_watch(self, request: rendering.Request) -> AsyncIterator[Any]:
        since = str(request.params.get("resourceVersion", ""))
        async for event in super()._serve_watch(request):
            if since.isdigit() and isinstance(event, dict):
                version = event.get("object", {}).get("metadata", {}).get("resourceVersion")
                if version is not None and int(version) <= int(since):
                    continue
            yield event

    def _next_version(self) -> str:
        self._last = next(self._versions)
        return str(self._last)

    def _admit_create(self, request: rendering.Request) -> None:
        data: dict[str, Any] = request.data
        meta = data.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:8]
        if request.namespace and not meta.get("namespace"):
            meta["namespace"] = request.namespace
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("generation", 1)
        meta.setdefault("creationTimestamp", _now())
        meta["resourceVersion"] = self._next_version()
        self._validate(request, data)

    def _admit_update(self, request: rendering.Request) -> None:
        key = (request.resource, request.namespace, request.name)
        if key not in self._objects or self._objects[key].deleted:
            return  # kmock answers 404 itself
        current = copy.deepcopy(dict(self._objects[key].raw))
        try:
            if isinstance(request.data, list):
                updated = jsonpatch.apply_patch(current, request.data)
            else:
                updated = merge_patch(current, request.data)
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
            raise kmock.KubernetesError(status=422, reason="Invalid", message=str(exc)) from exc
        self._validate(request, updated)
        stamp: dict[str, Any] = {"resourceVersion": self._next_version()}
        if request.subresource is None and updated.get("spec") != current.get("spec"):
            stamp["generation"] = int(current.get("metadata", {}).get("generation", 1)) + 1
        if isinstance(request.data, list):
            request.data.extend(
                {"op": "add", "path": f"/metadata/{k}", "value": v} for k, v in stamp.items()
            )
        else:
            request.data.setdefault("metadata", {}).update(stamp)

    def _validate(self, request: rendering.Request, obj: dict[str, Any]) -> None:
        resource = request.resource
        if resource is None or f"{resource.group}/{resource.version}/{resource.plural}" != (
            EXPERIMENTS
        ):
            return
        problems = _violations(openapi_schema(), obj)
        if problems:
            raise kmock.KubernetesError(status=422, reason="Invalid", message="; ".join(problems))


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
