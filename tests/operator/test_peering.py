"""More than one replica: kopf peering. The operator announces itself and still works."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
import pytest_asyncio
from kube_emulator import ApiServer
from operator_support import NAMESPACE, Cluster, eventually, quickstart

from judgelab_operator.config import OperatorConfig

pytestmark = [pytest.mark.asyncio, pytest.mark.operator, pytest.mark.timeout(60)]
PEERING = "judgelab"


@pytest.fixture
def config(config: OperatorConfig) -> OperatorConfig:
    return replace(config, peering=PEERING)


@pytest_asyncio.fixture
async def api(api: ApiServer) -> AsyncIterator[ApiServer]:
    """The KopfPeering object the platform chart creates next to kopf's peering CRDs."""
    peering = {
        "apiVersion": "kopf.dev/v1",
        "kind": "KopfPeering",
        "metadata": {"name": PEERING, "namespace": NAMESPACE},
    }
    api.objects["kopf.dev/v1/kopfpeerings", NAMESPACE, PEERING] = peering
    yield api


async def test_the_operator_joins_the_peering_and_runs_experiments(cluster: Cluster) -> None:
    def peers() -> dict[str, object]:
        found = cluster.objects("kopf.dev/v1/kopfpeerings").get(PEERING, {})
        status: dict[str, object] = found.get("status") or {}
        return status

    announced = await eventually(peers, "the operator announced itself in the peering")
    (identity,) = announced
    assert "lifetime" in str(announced[identity])
    await cluster.create(quickstart("peered"))
    await eventually(lambda: cluster.status("peered").get("phase") == "Annotating", "Annotating")
