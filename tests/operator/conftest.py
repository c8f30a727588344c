"""The operator, run for real by kopf (in its own thread) against the kmock emulator."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import kmock
import kopf
import pytest
import pytest_asyncio
from fake_helm import FakeHelm
from kube_emulator import ApiServer
from operator_support import NAMESPACE, Cluster, OperatorThread, free_port

from judgelab.phases import RetryPolicy
from judgelab_operator.config import OperatorConfig
from judgelab_operator.main import build_registry
from judgelab_operator.operator import ExperimentOperator


@pytest.fixture
def config() -> OperatorConfig:
    """Fast reconciliation and back-off; standalone (peering has its own test)."""
    return OperatorConfig(
        namespaces=(NAMESPACE,),
        reconcile_interval_s=0.05,
        retry=RetryPolicy(max_attempts=2, initial_delay_s=0.05, max_delay_s=0.1),
        peering="",
    )


@pytest_asyncio.fixture
async def api() -> AsyncIterator[ApiServer]:
    """The emulated Kubernetes API on a free loopback port."""
    async with ApiServer() as handler, kmock.Server(handler):
        handler.declare()
        yield handler


@pytest_asyncio.fixture
async def cluster(api: ApiServer, config: OperatorConfig) -> AsyncIterator[Cluster]:
    """kopf running the operator's handlers against `api` until the test ends."""
    helm = FakeHelm(str(api.url))
    operator = ExperimentOperator(config, helm)
    registry = build_registry(operator)

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(server=str(api.url), insecure=True)

    settings = kopf.OperatorSettings()
    settings.scanning.disabled = True
    liveness = f"http://127.0.0.1:{free_port()}/healthz"
    # Its own thread and loop: at shutdown kopf cancels every task it did not see at startup.
    runner = OperatorThread(
        registry=registry,
        settings=settings,
        namespaces=config.namespaces,
        liveness_endpoint=liveness,
    )
    runner.start()
    try:
        await asyncio.to_thread(runner.wait_ready)
        async with aiohttp.ClientSession(base_url=str(api.url)) as http:
            yield Cluster(api, helm, http, operator, liveness)
    finally:
        await asyncio.to_thread(runner.stop)
