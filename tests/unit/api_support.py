"""Shared by the API security, client and `judgelab judge` tests: scripts as modules, a dev
PKI, token files, and a judge pool with a constant (model-free) judge on 127.0.0.1."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc

from judgelab.api.v1 import common_pb2, judge_pool_pb2, judge_pool_pb2_grpc
from judgelab.engines.constant import ConstantEngine
from judgelab.judge_pool.pool import JudgePool
from judgelab.judge_pool.servicer import JudgePoolServicer
from judgelab.judging import JudgeConfig, PointwiseJudge
from judgelab.serving.security import SecurityOptions
from judgelab.serving.server import GrpcServer, ServiceBinding

ROOT = Path(__file__).resolve().parents[2]
JUDGE_POOL = judge_pool_pb2.DESCRIPTOR.services_by_name["JudgePool"].full_name
TOKENS = {"team-a": "a" * 8 + "-token-of-team-a-0123", "team-b": "b" * 8 + "-token-of-team-b-4567"}


def load_script(name: str) -> ModuleType:
    """``scripts/NAME.py`` imported as a module (scripts are not a package)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def write_tokens(path: Path, tokens: dict[str, str] = TOKENS) -> Path:
    path.write_text("".join(f"{name}: {token}\n" for name, token in tokens.items()))
    return path


def constant_pool(max_batch: int = 8) -> JudgePool:
    pool = JudgePool()
    config = JudgeConfig(name="constant", model="constant")
    pool.add("constant", PointwiseJudge(ConstantEngine(), config), max_batch=max_batch)
    return pool


def start_pool_server(pool: JudgePool, security: SecurityOptions | None = None) -> GrpcServer:
    binding = ServiceBinding(
        JudgePoolServicer(pool), judge_pool_pb2_grpc.add_JudgePoolServicer_to_server, JUDGE_POOL
    )
    return GrpcServer([binding], security=security or SecurityOptions(), max_workers=8).start()


def score_request(n: int = 1, text: str = "Paris.") -> judge_pool_pb2.ScoreRequest:
    prompt = [common_pb2.ChatMessage(role=common_pb2.ROLE_USER, content="Capital of France?")]
    return judge_pool_pb2.ScoreRequest(
        judge="constant",
        samples=[common_pb2.Sample(id=f"s{i}", prompt=prompt, response=text) for i in range(n)],
    )


def tls_channel(server: GrpcServer, ca: Path, client: tuple[Path, Path] | None = None) -> Any:
    key, chain = (client[1].read_bytes(), client[0].read_bytes()) if client else (None, None)
    credentials = grpc.ssl_channel_credentials(ca.read_bytes(), key, chain)
    return grpc.secure_channel(f"localhost:{server.port}", credentials)


def status_of(call: Any) -> grpc.StatusCode:
    try:
        call()
    except grpc.RpcError as error:
        return error.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


def score_once(channel: Any, metadata: Any = None) -> Any:
    return judge_pool_pb2_grpc.JudgePoolStub(channel).Score(
        score_request(), metadata=metadata, timeout=5
    )
