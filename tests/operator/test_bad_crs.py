"""Experiments the CRD schema rejects: each file has one defect, named by its first line."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from kube_emulator import EXPERIMENTS, ApiServer
from operator_support import NAMESPACE
from unit.test_crd import _violations

from judgelab.crd import openapi_schema
from judgelab.spec import SpecError, validate_mapping

ROOT = Path(__file__).resolve().parents[2]
BAD = sorted((ROOT / "tests/data/bad-crs").glob("*.yaml"))
COMMENT = re.compile(r"^# (?P<why>.+) \(expect: (?P<expect>.+)\)$")


def _load(path: Path) -> tuple[dict[str, Any], str]:
    text = path.read_text(encoding="utf-8")
    match = COMMENT.match(text.splitlines()[0])
    assert match, f"{path.name}: first line must be '# <why> (expect: <violation>)'"
    body: dict[str, Any] = yaml.safe_load(text)
    return body, match["expect"]


def test_there_are_at_least_ten() -> None:
    assert len(BAD) >= 10


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.stem)
def test_the_crd_schema_rejects_it_for_the_stated_reason_only(path: Path) -> None:
    body, expect = _load(path)
    violations = _violations(openapi_schema(), body)
    assert len(violations) == 1 and expect in violations[0], violations


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.stem)
def test_the_spec_models_reject_it_too(path: Path) -> None:
    body, _ = _load(path)
    with pytest.raises(SpecError):
        validate_mapping(body, source=path.name)


@pytest.mark.asyncio
@pytest.mark.operator
async def test_the_emulated_api_server_refuses_every_one(api: ApiServer) -> None:
    collection = f"/apis/{EXPERIMENTS.rsplit('/', 1)[0]}/namespaces/{NAMESPACE}/experiments"
    async with aiohttp.ClientSession(base_url=str(api.url)) as http:
        for path in BAD:
            body, expect = _load(path)
            async with http.post(collection, json=body) as response:
                payload = await response.json()
            assert response.status == 422, (path.name, payload)
            assert expect in payload["message"], (path.name, payload["message"])
        good = yaml.safe_load((ROOT / "examples/quickstart.yaml").read_text(encoding="utf-8"))
        async with http.post(collection, json=good) as response:
            assert response.status == 200, await response.text()
