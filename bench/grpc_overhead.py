"""What the judge pool's serving layer costs: `Score` latency over gRPC on 127.0.0.1 with a
constant-output judge (no model), against the same pool called in-process (the baseline).

Target: gRPC p50 <= 2 ms. Usage: python bench/grpc_overhead.py [--calls N]
"""

from __future__ import annotations

import argparse
import statistics

import grpc
from common import timed, write_results

from judgelab.api.v1 import common_pb2, judge_pool_pb2, judge_pool_pb2_grpc
from judgelab.engines.base import ChatMessage
from judgelab.engines.constant import ConstantEngine
from judgelab.judge_pool.pool import JudgePool
from judgelab.judge_pool.server import start_judge_pool_server
from judgelab.judging import JudgeConfig, PointwiseJudge, Sample

TARGET_P50_S = 0.002


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"p50_s": statistics.median(ordered), "p99_s": ordered[int(0.99 * (len(ordered) - 1))],
            "n": len(ordered)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    pool = JudgePool()
    pool.add("constant", PointwiseJudge(ConstantEngine(), JudgeConfig(name="constant",
                                                                      model="constant")),
             max_batch=8)
    server = start_judge_pool_server(pool)
    request = judge_pool_pb2.ScoreRequest(judge="constant", samples=[common_pb2.Sample(
        id="s", response="Paris.",
        prompt=[common_pb2.ChatMessage(role=common_pb2.ROLE_USER, content="Capital of France?")])])
    sample = Sample("s", [ChatMessage("user", "Capital of France?")], "Paris.")
    with grpc.insecure_channel(server.address) as channel:
        stub = judge_pool_pb2_grpc.JudgePoolStub(channel)
        timed(lambda: stub.Score(request, timeout=10), 200)  # warm-up
        over_grpc = percentiles(timed(lambda: stub.Score(request, timeout=10), args.calls))
    in_process = percentiles(timed(lambda: pool.score("constant", [sample]), args.calls))
    server.stop(grace_s=1)
    pool.close()
    ratio = over_grpc["p50_s"] / in_process["p50_s"]
    print(f"in-process pool.score  p50 {in_process['p50_s'] * 1e3:.3f} ms  "
          f"p99 {in_process['p99_s'] * 1e3:.3f} ms (baseline)")
    print(f"gRPC Score             p50 {over_grpc['p50_s'] * 1e3:.3f} ms  "
          f"p99 {over_grpc['p99_s'] * 1e3:.3f} ms  ({ratio:.2f}x baseline; "
          f"target p50 <= {TARGET_P50_S * 1e3:.0f} ms: "
          f"{'PASS' if over_grpc['p50_s'] <= TARGET_P50_S else 'FAIL'})")
    path = write_results("grpc_overhead", {
        "grpc": over_grpc, "in_process_baseline": in_process, "ratio_p50": ratio,
        "target_p50_s": TARGET_P50_S, "passed": over_grpc["p50_s"] <= TARGET_P50_S,
    })
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
