"""Gold annotator cache (issue 3): a second identical ``Annotate`` batch of 100 items makes no
model call and returns identical scores.

The built-in model is the reasoning gold judge of examples/quickstart.yaml (its reasoning cut
to --max-tokens), behind the real gRPC server, with a real ``redis-server`` as the cache. The
items are the first 100 Arena-Hard v2.0 questions with their o3-mini answers cut to 64 tokens
(../shared/data/arena-hard/, read in place). Baseline: the first (uncached) batch, same run.

Usage: python bench/gold_cache.py [--items 100] [--max-tokens 32]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from common import write_results

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "services"))
sys.path.insert(0, str(ROOT / "tests" / "support"))

DATA = ROOT.parent / "shared" / "data" / "arena-hard"
QUICKSTART = ROOT / "examples" / "quickstart.yaml"


def load_items(tokenizer: Any, count: int, answer_tokens: int) -> list[tuple[str, str]]:
    import json

    answers = {}
    with (DATA / "arena-hard-v2.0-answers-o3-mini-2025-01-31.jsonl").open() as lines:
        for line in lines:
            row = json.loads(line)
            answers[row["uid"]] = row["messages"][-1]["content"]["answer"]
    items = []
    with (DATA / "arena-hard-v2.0-question.jsonl").open() as lines:
        for line in lines:
            if len(items) == count:
                break
            row = json.loads(line)
            ids = tokenizer(answers[row["uid"]], add_special_tokens=False)["input_ids"]
            # Long questions are cut too: the point is the cache, not the context limit.
            question = tokenizer.decode(tokenizer(row["prompt"])["input_ids"][:256])
            items.append((question, tokenizer.decode(ids[:answer_tokens])))
    return items


def annotate_request(items: list[tuple[str, str]]) -> Any:
    from judgelab.api.v1 import common_pb2, gold_annotator_pb2

    return gold_annotator_pb2.AnnotateRequest(
        experiment="quickstart",
        samples=[
            common_pb2.Sample(
                id=f"s{i}",
                prompt=[common_pb2.ChatMessage(role=common_pb2.ROLE_USER, content=question)],
                response=answer,
            )
            for i, (question, answer) in enumerate(items)
        ],
    )


def timed_call(stub: Any, request: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    reply = stub.Annotate(request, timeout=7200)
    return reply, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=100)
    parser.add_argument("--max-tokens", type=int, default=32, help="gold reasoning budget")
    parser.add_argument("--answer-tokens", type=int, default=64)
    args = parser.parse_args()

    import grpc
    import redis
    import yaml
    from redis_server import RedisServer

    from judgelab.annotator.server import build_gold_annotator, start_gold_annotator_server
    from judgelab.api.v1 import gold_annotator_pb2_grpc
    from judgelab.spec import validate_mapping

    data = yaml.safe_load(QUICKSTART.read_text())
    data["spec"]["gold"]["max_tokens"] = args.max_tokens
    experiment = validate_mapping(data, str(QUICKSTART))
    with RedisServer() as server:
        client = redis.Redis.from_url(server.url)
        core = build_gold_annotator(experiment, redis=client)
        grpc_server = start_gold_annotator_server(core)
        stub = gold_annotator_pb2_grpc.GoldAnnotatorStub(grpc.insecure_channel(grpc_server.address))
        try:
            items = load_items(core.judge.engine.tokenizer, args.items, args.answer_tokens)
            request = annotate_request(items)
            first, first_s = timed_call(stub, request)
            calls_first = core.model_calls
            second, second_s = timed_call(stub, request)
            calls_second = core.model_calls - calls_first
        finally:
            grpc_server.stop(5)
            core.close()
    identical = [a.score for a in first.annotations] == [a.score for a in second.annotations]
    result = {
        "model": "builtin:smollm2-135m-instruct (reasoning gold)",
        "items": len(items),
        "gold_max_tokens": args.max_tokens,
        "first": {"wall_s": first_s, "model_calls": calls_first},
        "second": {"wall_s": second_s, "model_calls": calls_second},
        "second_all_cached": all(a.cached for a in second.annotations),
        "identical_scores": identical,
        "invalid_first": sum(not a.score.valid for a in first.annotations),
        "speedup": first_s / second_s,
        "checks": {"second_model_calls_zero": calls_second == 0, "identical_scores": identical},
    }
    print(
        f"first batch: {first_s:.1f} s, {calls_first} model calls; "
        f"second: {second_s * 1000:.1f} ms, {calls_second} model calls; "
        f"identical scores: {identical}; {result['speedup']:.0f}x"
    )
    print(f"wrote {write_results('gold_cache', result)}")


if __name__ == "__main__":
    main()
