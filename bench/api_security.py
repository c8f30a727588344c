"""What API security costs and whether it holds: `Score` p50 latency with TLS + bearer-token auth
against plaintext on 127.0.0.1 (the baseline, same run, same constant-output judge so no model
dominates), then 1,000 unauthenticated or malformed requests sent while an authenticated client
keeps scoring: every bad one must be refused with the right code, every good one must succeed.

Target: TLS + auth adds <= 1 ms to the p50. Usage: python bench/api_security.py [--calls N]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import tempfile
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import grpc
from common import timed, write_results

from judgelab.api.v1 import common_pb2, judge_pool_pb2, judge_pool_pb2_grpc
from judgelab.engines.constant import ConstantEngine
from judgelab.judge_pool.pool import JudgePool
from judgelab.judge_pool.servicer import JudgePoolServicer
from judgelab.judging import JudgeConfig, PointwiseJudge
from judgelab.serving.security import SecurityOptions
from judgelab.serving.server import GrpcServer, ServiceBinding

TARGET_ADDED_P50_S = 0.001
TOKEN = "bench-token-0123456789abcdef"
SERVICE = judge_pool_pb2.DESCRIPTOR.services_by_name["JudgePool"].full_name
# (what is wrong, metadata, raw request bytes or None for a valid request, expected code)
BAD_KINDS: list[tuple[str, Any, bytes | None, grpc.StatusCode]] = [
    ("no token", None, None, grpc.StatusCode.UNAUTHENTICATED),
    (
        "wrong token",
        (("authorization", "Bearer not-the-token-000000"),),
        None,
        grpc.StatusCode.UNAUTHENTICATED,
    ),
    ("not bearer", (("authorization", f"Basic {TOKEN}"),), None, grpc.StatusCode.UNAUTHENTICATED),
    (
        "garbage bytes, no token",
        None,
        b"\x0a\x05\xff\xfe\xfd\xfc\xfb",
        grpc.StatusCode.UNAUTHENTICATED,
    ),
    (
        "garbage bytes, good token",
        (("authorization", f"Bearer {TOKEN}"),),
        b"\x0a\x05\xff\xfe\xfd\xfc\xfb\x12\x99",
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
]


def _dev_certs() -> Any:
    path = Path(__file__).resolve().parents[1] / "scripts" / "dev_certs.py"
    spec = importlib.util.spec_from_file_location("dev_certs", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["dev_certs"] = module
    spec.loader.exec_module(module)
    return module


def _server(pool: JudgePool, security: SecurityOptions) -> GrpcServer:
    binding = ServiceBinding(
        JudgePoolServicer(pool), judge_pool_pb2_grpc.add_JudgePoolServicer_to_server, SERVICE
    )
    return GrpcServer([binding], security=security).start()


def _request() -> judge_pool_pb2.ScoreRequest:
    return judge_pool_pb2.ScoreRequest(
        judge="constant",
        samples=[
            common_pb2.Sample(
                id="s",
                response="Paris.",
                prompt=[
                    common_pb2.ChatMessage(role=common_pb2.ROLE_USER, content="Capital of France?")
                ],
            )
        ],
    )


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_s": statistics.median(ordered),
        "p99_s": ordered[int(0.99 * (len(ordered) - 1))],
        "n": len(ordered),
    }


def latency(channel: grpc.Channel, metadata: Any, calls: int) -> dict[str, float]:
    stub = judge_pool_pb2_grpc.JudgePoolStub(channel)
    request = _request()
    timed(lambda: stub.Score(request, metadata=metadata, timeout=10), 200)  # warm-up
    return percentiles(timed(lambda: stub.Score(request, metadata=metadata, timeout=10), calls))


def flood(channel: grpc.Channel, good: Any, bad_requests: int) -> dict[str, Any]:
    """``bad_requests`` refused calls on one thread while good ones run on another."""
    stub = judge_pool_pb2_grpc.JudgePoolStub(channel)
    raw = channel.unary_unary(f"/{SERVICE}/Score")
    stop = threading.Event()
    good_counts: Counter[str] = Counter()

    def keep_scoring() -> None:
        while not stop.is_set():
            try:
                stub.Score(_request(), metadata=good, timeout=10)
                good_counts["ok"] += 1
            except grpc.RpcError as error:
                good_counts[error.code().name] += 1

    worker = threading.Thread(target=keep_scoring)
    worker.start()
    refused: Counter[str] = Counter()
    wrong: Counter[str] = Counter()
    for i in range(bad_requests):
        kind, metadata, data, expected = BAD_KINDS[i % len(BAD_KINDS)]
        try:
            if data is None:
                stub.Score(_request(), metadata=metadata, timeout=10)
            else:
                raw(data, metadata=metadata, timeout=10)
            wrong[f"{kind}: OK"] += 1
        except grpc.RpcError as error:
            (refused if error.code() == expected else wrong)[f"{kind}: {error.code().name}"] += 1
    stop.set()
    worker.join()
    return {
        "bad_sent": bad_requests,
        "bad_refused_with_right_code": sum(refused.values()),
        "bad_by_kind": dict(refused),
        "bad_wrong_outcome": dict(wrong),
        "good_ok": good_counts["ok"],
        "good_failed": {k: v for k, v in good_counts.items() if k != "ok"},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--bad", type=int, default=1000)
    args = parser.parse_args()
    pool = JudgePool()
    pool.add(
        "constant",
        PointwiseJudge(ConstantEngine(), JudgeConfig(name="constant", model="constant")),
        max_batch=8,
    )
    with tempfile.TemporaryDirectory() as tmp:
        pki = _dev_certs().make_dev_pki(Path(tmp) / "pki")
        tokens = Path(tmp) / "tokens.yaml"
        tokens.write_text(f"bench: {TOKEN}\n")
        plain = _server(pool, SecurityOptions())
        secure = _server(
            pool, SecurityOptions(tls_cert=pki.server_cert, tls_key=pki.server_key, tokens=tokens)
        )
        good = (("authorization", f"Bearer {TOKEN}"),)
        credentials = grpc.ssl_channel_credentials(pki.ca.read_bytes())
        with (
            grpc.insecure_channel(plain.address) as p,
            grpc.secure_channel(f"localhost:{secure.port}", credentials) as s,
        ):
            plaintext = latency(p, None, args.calls)
            secured = latency(s, good, args.calls)
            abuse = flood(s, good, args.bad)
        plain.stop(1)
        secure.stop(1)
    pool.close()
    added = secured["p50_s"] - plaintext["p50_s"]
    passed = (
        added <= TARGET_ADDED_P50_S
        and abuse["bad_refused_with_right_code"] == args.bad
        and not abuse["good_failed"]
        and abuse["good_ok"] > 0
    )
    print(
        f"plaintext Score   p50 {plaintext['p50_s'] * 1e3:.3f} ms  "
        f"p99 {plaintext['p99_s'] * 1e3:.3f} ms (baseline)"
    )
    print(
        f"TLS + token Score p50 {secured['p50_s'] * 1e3:.3f} ms  "
        f"p99 {secured['p99_s'] * 1e3:.3f} ms  (+{added * 1e3:.3f} ms, "
        f"{secured['p50_s'] / plaintext['p50_s']:.2f}x; target <= +1 ms)"
    )
    print(
        f"bad requests: {abuse['bad_refused_with_right_code']}/{args.bad} refused with the "
        f"right code {abuse['bad_by_kind']}; wrong outcomes {abuse['bad_wrong_outcome']}"
    )
    print(
        f"authenticated calls meanwhile: {abuse['good_ok']} ok, failed {abuse['good_failed']}"
        f" -> {'PASS' if passed else 'FAIL'}"
    )
    path = write_results(
        "api_security",
        {
            "plaintext_baseline": plaintext,
            "tls_token": secured,
            "added_p50_s": added,
            "ratio_p50": secured["p50_s"] / plaintext["p50_s"],
            "target_added_p50_s": TARGET_ADDED_P50_S,
            "abuse": abuse,
            "passed": passed,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
